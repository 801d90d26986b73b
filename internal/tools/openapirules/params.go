package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// runParams adds to the path and query parameters of the OpenAPI document
// at swaggerPath the limits of their fields' buf.validate rules that
// protoc-gen-openapiv2 leaves out: its parameter objects carry a field's
// pattern and enum but not minLength, maxLength, minimum or maximum, and a
// minimum of 0 does not survive its options at all. 64-bit integers are
// JSON strings (protojson), to which minimum and maximum do not apply:
// their limits stay in the description's words. The document keeps its
// key order; only the limits are added.
//
//	go run ./internal/tools/openapirules -image .bin/shop.binpb \
//		-swagger gateway/openapiv2/shop.swagger.json
func runParams(imagePath, swaggerPath string) error {
	files, err := readImage(imagePath)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	doc, err := decodeOrdered(dec)
	if err != nil {
		return fmt.Errorf("%s: %w", swaggerPath, err)
	}
	root, ok := doc.(*object)
	if !ok {
		return fmt.Errorf("%s: not a JSON object", swaggerPath)
	}
	methods := methodsByOperation(files)
	paths, _ := root.get("paths").(*object)
	if paths == nil {
		return fmt.Errorf("%s: no paths", swaggerPath)
	}
	for _, p := range paths.vals {
		ops, _ := p.(*object)
		if ops == nil {
			continue
		}
		for _, o := range ops.vals {
			op, _ := o.(*object)
			if op == nil {
				continue
			}
			id, _ := op.get("operationId").(string)
			m, ok := methods[id]
			if !ok {
				continue
			}
			params, _ := op.get("parameters").([]any)
			for _, pv := range params {
				param, _ := pv.(*object)
				if param == nil {
					continue
				}
				in, _ := param.get("in").(string)
				name, _ := param.get("name").(string)
				if in != "query" && in != "path" {
					continue
				}
				f := fieldByJSONName(m.Input(), name)
				if f == nil {
					continue
				}
				r, ok := proto.GetExtension(f.Options(), validate.E_Field).(*validate.FieldRules)
				if !ok || r == nil {
					continue
				}
				for _, l := range paramLimits(f, r) {
					param.set(l.key, l.val)
				}
			}
		}
	}
	var b bytes.Buffer
	if err := encodeOrdered(&b, doc, ""); err != nil {
		return err
	}
	b.WriteByte('\n')
	return os.WriteFile(swaggerPath, b.Bytes(), 0o644)
}

// methodsByOperation maps the operationIds protoc-gen-openapiv2 gives the
// shop's methods ("ProductService_ListProducts") to the methods.
func methodsByOperation(files *protoregistry.Files) map[string]protoreflect.MethodDescriptor {
	methods := map[string]protoreflect.MethodDescriptor{}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "shop.") {
			return true
		}
		for i := range fd.Services().Len() {
			s := fd.Services().Get(i)
			for j := range s.Methods().Len() {
				m := s.Methods().Get(j)
				methods[string(s.Name())+"_"+string(m.Name())] = m
			}
		}
		return true
	})
	return methods
}

// fieldByJSONName returns the field of m a parameter named name stands
// for: its JSON name, or its proto name.
func fieldByJSONName(m protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if f := m.Fields().ByJSONName(name); f != nil {
		return f
	}
	return m.Fields().ByName(protoreflect.Name(name))
}

type limit struct {
	key string
	val any
}

// paramLimits returns the JSON Schema limits of a parameter for field f
// with rules r: string lengths as writeField states them, and the bounds
// of 32-bit integers, 0 included.
func paramLimits(f protoreflect.FieldDescriptor, r *validate.FieldRules) []limit {
	var ls []limit
	if s := r.GetString(); s != nil {
		if n := max(s.GetMinLen(), s.GetMinBytes()); n > 0 {
			ls = append(ls, limit{"minLength", n})
		} else if isRequired(f, r) {
			ls = append(ls, limit{"minLength", 1})
		}
		if s.MaxLen != nil {
			ls = append(ls, limit{"maxLength", s.GetMaxLen()})
		} else if s.MaxBytes != nil && (s.GetEmail() || s.GetPattern() == "^[!-~]*$") {
			ls = append(ls, limit{"maxLength", s.GetMaxBytes()})
		}
	}
	if i := r.GetInt32(); i != nil {
		if _, ok := i.GetGreaterThan().(*validate.Int32Rules_Gte); ok {
			ls = append(ls, limit{"minimum", i.GetGte()})
		}
		if _, ok := i.GetLessThan().(*validate.Int32Rules_Lte); ok {
			ls = append(ls, limit{"maximum", i.GetLte()})
		}
	}
	return ls
}

// object is a JSON object that keeps its keys' order.
type object struct {
	keys []string
	vals []any
}

func (o *object) get(k string) any {
	for i, key := range o.keys {
		if key == k {
			return o.vals[i]
		}
	}
	return nil
}

// set sets k to v, in place if k is there, else at the end.
func (o *object) set(k string, v any) {
	for i, key := range o.keys {
		if key == k {
			o.vals[i] = v
			return
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

// decodeOrdered decodes the next JSON value of dec, objects as *object.
func decodeOrdered(dec *json.Decoder) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		o := &object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k.(string))
			o.vals = append(o.vals, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return o, nil
	case json.Delim('['):
		a := []any{}
		for dec.More() {
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return a, nil
	}
	return t, nil
}

// encodeOrdered writes v as json.MarshalIndent(v, "", "  ") would, objects
// in their keys' order.
func encodeOrdered(w io.Writer, v any, indent string) error {
	inner := indent + "  "
	switch v := v.(type) {
	case *object:
		if len(v.keys) == 0 {
			_, err := io.WriteString(w, "{}")
			return err
		}
		io.WriteString(w, "{\n")
		for i, k := range v.keys {
			key, err := json.Marshal(k)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s%s: ", inner, key)
			if err := encodeOrdered(w, v.vals[i], inner); err != nil {
				return err
			}
			if i < len(v.keys)-1 {
				io.WriteString(w, ",")
			}
			io.WriteString(w, "\n")
		}
		_, err := io.WriteString(w, indent+"}")
		return err
	case []any:
		if len(v) == 0 {
			_, err := io.WriteString(w, "[]")
			return err
		}
		io.WriteString(w, "[\n")
		for i, e := range v {
			io.WriteString(w, inner)
			if err := encodeOrdered(w, e, inner); err != nil {
				return err
			}
			if i < len(v)-1 {
				io.WriteString(w, ",")
			}
			io.WriteString(w, "\n")
		}
		_, err := io.WriteString(w, indent+"]")
		return err
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
}
