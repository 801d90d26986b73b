package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden runs the plugin over the conformance test service's proto
// (taken from its generated Go descriptor, so no compiler is needed) and
// over a hand-built file that uses every kind of key, and compares the
// output with testdata/*.golden. The shop's protos are covered by the
// shop's check that buf generate reproduces gen/.
func TestGolden(t *testing.T) {
	files := []protoreflect.FileDescriptor{
		testingv1.File_kgrpc_testing_v1_echo_proto,
	}
	req := &pluginpb.CodeGeneratorRequest{Parameter: proto.String("paths=source_relative")}
	seen := map[string]bool{}
	for _, fd := range files {
		addFile(req, fd, seen)
		req.FileToGenerate = append(req.FileToGenerate, fd.Path())
	}
	keys := keysFile()
	req.ProtoFile = append(req.ProtoFile, keys)
	req.FileToGenerate = append(req.FileToGenerate, keys.GetName())

	resp := run(t, req)
	if resp.GetError() != "" {
		t.Fatalf("plugin error: %s", resp.GetError())
	}
	got := map[string]string{}
	for _, f := range resp.GetFile() {
		got[strings.ReplaceAll(f.GetName(), "/", "_")+".golden"] = f.GetContent()
	}
	if *update {
		old, _ := filepath.Glob(filepath.Join("testdata", "*.golden"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		for name, content := range got {
			if err := os.WriteFile(filepath.Join("testdata", name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	want, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Errorf("plugin wrote %d files, testdata has %d goldens; run go test -update", len(got), len(want))
	}
	for name, content := range got {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatalf("%v; run go test -update", err)
			}
			if string(b) != content {
				t.Errorf("output differs from testdata/%s; run go test -update and review the diff\ngot:\n%s", name, content)
			}
		})
	}
}

// TestKeyErrors checks that a key option naming a field that cannot be a key
// fails generation with an error that names the problem.
func TestKeyErrors(t *testing.T) {
	tests := []struct {
		name    string
		method  string // partition_key of the method, if any
		event   string // key of the event, if any
		stream  bool   // the method is client-streaming
		wantErr string
	}{
		{name: "client stream", method: "s", stream: true, wantErr: `partition_key "s": a client-streaming method has no request to key its stream by`},
		{name: "unknown field", method: "nope", wantErr: `partition_key "nope": message test.keys.v1.Req has no field "nope"`},
		{name: "message field", method: "inner", wantErr: "field test.keys.v1.Req.inner is a message; a key must be"},
		{name: "repeated field", method: "tags", wantErr: "field test.keys.v1.Req.tags is repeated"},
		{name: "float field", method: "ratio", wantErr: "field test.keys.v1.Req.ratio is a double"},
		{name: "path through scalar", method: "s.x", wantErr: "field test.keys.v1.Req.s is a string, not a message"},
		{name: "unknown nested field", method: "inner.nope", wantErr: `message test.keys.v1.Inner has no field "nope"`},
		{name: "event unknown field", event: "nope", wantErr: `event test.keys.v1.Req: key "nope": message test.keys.v1.Req has no field "nope"`},
		{name: "event without key", event: "-", wantErr: "event test.keys.v1.Req: the event option needs a key field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keysFile()
			f.Service[0].Method = f.Service[0].Method[:1]
			f.Service[0].Method[0].Options = nil
			f.MessageType = f.MessageType[:2] // Inner, Req
			if tt.method != "" {
				f.Service[0].Method[0].Options = methodKey(tt.method)
			}
			if tt.stream {
				f.Service[0].Method[0].ClientStreaming = proto.Bool(true)
			}
			if tt.event != "" {
				key := tt.event
				if key == "-" {
					key = ""
				}
				f.MessageType[1].Options = eventKey(key, "")
			}
			req := &pluginpb.CodeGeneratorRequest{
				Parameter:      proto.String("paths=source_relative"),
				FileToGenerate: []string{f.GetName()},
			}
			addFile(req, kafkav1.File_kgrpc_kafka_v1_options_proto, map[string]bool{})
			req.ProtoFile = append(req.ProtoFile, f)
			resp := run(t, req)
			if !strings.Contains(resp.GetError(), tt.wantErr) {
				t.Fatalf("error = %q, want it to contain %q", resp.GetError(), tt.wantErr)
			}
			if !strings.HasPrefix(resp.GetError(), "test/keys/v1/keys.proto: ") {
				t.Errorf("error = %q, want it to name the file", resp.GetError())
			}
			if len(resp.GetFile()) != 0 {
				t.Errorf("plugin wrote %d files despite the error", len(resp.GetFile()))
			}
		})
	}
}

// run runs the plugin in process.
func run(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	gen, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := generate(gen); err != nil {
		gen.Error(err)
	}
	return gen.Response()
}

// addFile adds fd and, before it, its imports to req.ProtoFile, once each.
func addFile(req *pluginpb.CodeGeneratorRequest, fd protoreflect.FileDescriptor, seen map[string]bool) {
	if seen[fd.Path()] {
		return
	}
	seen[fd.Path()] = true
	imports := fd.Imports()
	for i := range imports.Len() {
		addFile(req, imports.Get(i).FileDescriptor, seen)
	}
	req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
}

// keysFile returns a hand-built file whose service and event use every kind
// of key and a topic override.
func keysFile() *descriptorpb.FileDescriptorProto {
	field := func(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			JsonName: proto.String(name),
			Number:   proto.Int32(n),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:     typ.Enum(),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	tags := field("tags", 20, descriptorpb.FieldDescriptorProto_TYPE_STRING, "")
	tags.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	method := func(name, key string) *descriptorpb.MethodDescriptorProto {
		m := &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(name),
			InputType:  proto.String(".test.keys.v1.Req"),
			OutputType: proto.String(".test.keys.v1.Inner"),
		}
		if key != "" {
			m.Options = methodKey(key)
		}
		return m
	}
	serviceOpts := &descriptorpb.ServiceOptions{}
	proto.SetExtension(serviceOpts, kafkav1.E_Kafka, &kafkav1.ServiceKafkaOptions{Topic: "keys-requests"})
	T := descriptorpb.FieldDescriptorProto_TYPE_STRING
	return &descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/keys/v1/keys.proto"),
		Package:    proto.String("test.keys.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"kgrpc/kafka/v1/options.proto"},
		Options:    &descriptorpb.FileOptions{GoPackage: proto.String("example.com/test/keys/v1;keysv1")},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Kind"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("KIND_UNSPECIFIED"), Number: proto.Int32(0)},
				{Name: proto.String("KIND_A"), Number: proto.Int32(1)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			{
				Name: proto.String("Inner"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("s", 1, T, ""),
					field("n", 2, descriptorpb.FieldDescriptorProto_TYPE_INT64, ""),
				},
			},
			{
				Name: proto.String("Req"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("s", 1, T, ""),
					field("raw", 2, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
					field("i32", 3, descriptorpb.FieldDescriptorProto_TYPE_SINT32, ""),
					field("u64", 4, descriptorpb.FieldDescriptorProto_TYPE_FIXED64, ""),
					field("b", 5, descriptorpb.FieldDescriptorProto_TYPE_BOOL, ""),
					field("kind", 6, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".test.keys.v1.Kind"),
					field("inner", 7, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".test.keys.v1.Inner"),
					field("ratio", 8, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, ""),
					tags,
				},
			},
			{
				Name:    proto.String("KeyedByPath"),
				Options: eventKey("inner.n", "keys-events"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("inner", 1, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".test.keys.v1.Inner"),
				},
				NestedType: []*descriptorpb.DescriptorProto{{
					Name:    proto.String("Nested"),
					Options: eventKey("b", ""),
					Field: []*descriptorpb.FieldDescriptorProto{
						field("b", 1, descriptorpb.FieldDescriptorProto_TYPE_BOOL, ""),
					},
				}},
			},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:    proto.String("KeyService"),
			Options: serviceOpts,
			Method: []*descriptorpb.MethodDescriptorProto{
				method("ByString", "s"),
				method("ByBytes", "raw"),
				method("BySigned", "i32"),
				method("ByUnsigned", "u64"),
				method("ByBool", "b"),
				method("ByEnum", "kind"),
				method("ByPath", "inner.n"),
				method("Unkeyed", ""),
			},
		}},
	}
}

// methodKey returns method options with a partition key.
func methodKey(key string) *descriptorpb.MethodOptions {
	o := &descriptorpb.MethodOptions{}
	proto.SetExtension(o, kafkav1.E_KafkaMethod, &kafkav1.MethodKafkaOptions{PartitionKey: key})
	return o
}

// eventKey returns message options marking an event.
func eventKey(key, topic string) *descriptorpb.MessageOptions {
	o := &descriptorpb.MessageOptions{}
	proto.SetExtension(o, kafkav1.E_Event, &kafkav1.EventOptions{Key: key, Topic: topic})
	return o
}
