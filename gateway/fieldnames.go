package gateway

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/validate"
)

// The services name fields in errors by their protobuf names, as the wire
// does (google.rpc.BadRequest field violations "items[0].product_id", the
// validation message that lists them); the REST API names them as its JSON
// does, lowerCamelCase ("items[0].productId"). The gateway translates the
// paths of an error of a call it made, walking the request message of the
// call's RPC method: this is presentation, and the wire keeps proto names.

// requestDescriptor returns the request message of the RPC method
// ("/shop.users.v1.UserService/CreateUser"), or nil when it is not known.
func requestDescriptor(method string) protoreflect.MessageDescriptor {
	if m := kafkatransport.MethodDescriptorOf(method); m != nil {
		return m.Input()
	}
	return nil
}

// jsonFieldPath returns path, a field path of message md in protobuf names
// ("items[0].product_id", `labels["a.b"].display_name`), with each field's
// JSON name instead ("items[0].productId"): segment by segment, keeping
// subscripts (list indexes, map keys) as they are. A segment that names no
// field of its message, and every segment after it, stays as it is.
func jsonFieldPath(md protoreflect.MessageDescriptor, path string) string {
	if md == nil || path == "" {
		return path
	}
	segs := splitFieldPath(path)
	for i, seg := range segs {
		if md == nil {
			break
		}
		name, subs := seg, ""
		if j := strings.IndexByte(seg, '['); j >= 0 {
			name, subs = seg[:j], seg[j:]
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			break
		}
		segs[i] = fd.JSONName() + subs
		switch {
		case fd.IsMap():
			md = nil
			if subs != "" {
				md = fd.MapValue().Message()
			}
		default:
			md = fd.Message()
		}
	}
	return strings.Join(segs, ".")
}

// splitFieldPath splits a field path at the dots outside subscripts and
// their quoted map keys.
func splitFieldPath(path string) []string {
	var (
		segs           []string
		start, depth   int
		quoted, escape bool
	)
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case quoted:
			switch {
			case escape:
				escape = false
			case c == '\\':
				escape = true
			case c == '"':
				quoted = false
			}
		case c == '"' && depth > 0:
			quoted = true
		case c == '[':
			depth++
		case c == ']' && depth > 0:
			depth--
		case c == '.' && depth == 0:
			segs = append(segs, path[start:i])
			start = i + 1
		}
	}
	return append(segs, path[start:])
}

// jsonFieldNames returns st with the field paths of its
// google.rpc.BadRequest details in JSON names (jsonFieldPath, on md, the
// request message of the call), and so its message when it is the one
// that lists the violations (kafkatransport/validate's Status). st itself
// is returned when nothing changes.
func jsonFieldNames(st *status.Status, md protoreflect.MessageDescriptor) *status.Status {
	if md == nil || len(st.Proto().GetDetails()) == 0 {
		return st
	}
	p := st.Proto() // a copy
	changed := false
	var oldWords, newWords []string
	for i, d := range p.GetDetails() {
		br := new(errdetails.BadRequest)
		if !d.MessageIs(br) || d.UnmarshalTo(br) != nil {
			continue
		}
		for _, fv := range br.GetFieldViolations() {
			field := jsonFieldPath(md, fv.GetField())
			oldWords, newWords = append(oldWords, violationWords(fv.GetField(), fv.GetDescription())), append(newWords, violationWords(field, fv.GetDescription()))
			if field != fv.GetField() {
				fv.Field, changed = field, true
			}
		}
		if a, err := anypb.New(br); err == nil {
			p.Details[i] = a
		}
	}
	if !changed {
		return st
	}
	if p.GetMessage() == validate.MessagePrefix+strings.Join(oldWords, "; ") {
		p.Message = validate.MessagePrefix + strings.Join(newWords, "; ")
	}
	return status.FromProto(p)
}

// violationWords is a violation as validate.Status words it in its
// message.
func violationWords(field, description string) string {
	if field == "" {
		return description
	}
	return field + ": " + description
}
