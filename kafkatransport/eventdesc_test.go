package kafkatransport_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

// eventType returns a dynamic message type "t.v1.E" with one field of each
// key kind, a nested message "inner" and a repeated and a double field,
// whose (kgrpc.kafka.v1.event) option is opts (none when nil).
func eventType(t *testing.T, opts *kafkav1.EventOptions) protoreflect.MessageType {
	t.Helper()
	field := func(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ.Enum(), Label: label.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	msgOpts := &descriptorpb.MessageOptions{}
	if opts != nil {
		proto.SetExtension(msgOpts, kafkav1.E_Event, opts)
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("t/v1/e.proto"),
		Package: proto.String("t.v1"),
		Syntax:  proto.String("proto3"),
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name:  proto.String("Color"),
			Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)}, {Name: proto.String("COLOR_RED"), Number: proto.Int32(7)}},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Inner"), Field: []*descriptorpb.FieldDescriptorProto{field("id", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, "")}},
			{Name: proto.String("E"), Options: msgOpts, Field: []*descriptorpb.FieldDescriptorProto{
				field("s", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
				field("b", 2, descriptorpb.FieldDescriptorProto_TYPE_BYTES, opt, ""),
				field("flag", 3, descriptorpb.FieldDescriptorProto_TYPE_BOOL, opt, ""),
				field("i32", 4, descriptorpb.FieldDescriptorProto_TYPE_INT32, opt, ""),
				field("s64", 5, descriptorpb.FieldDescriptorProto_TYPE_SINT64, opt, ""),
				field("u32", 6, descriptorpb.FieldDescriptorProto_TYPE_UINT32, opt, ""),
				field("f64", 7, descriptorpb.FieldDescriptorProto_TYPE_FIXED64, opt, ""),
				field("color", 8, descriptorpb.FieldDescriptorProto_TYPE_ENUM, opt, ".t.v1.Color"),
				field("inner", 9, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, opt, ".t.v1.Inner"),
				field("tags", 10, descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_LABEL_REPEATED, ""),
				field("ratio", 11, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, opt, ""),
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return dynamicpb.NewMessageType(fd.Messages().ByName("E"))
}

func TestEventSpecOfKeys(t *testing.T) {
	tests := []struct {
		key     string
		set     map[string]protoreflect.Value // field values of the event
		wantKey string                        // "<nil>" for no key
	}{
		{"s", map[string]protoreflect.Value{"s": protoreflect.ValueOfString("abc")}, "abc"},
		{"s", nil, "<nil>"},
		{"b", map[string]protoreflect.Value{"b": protoreflect.ValueOfBytes([]byte{'x', 0})}, "x\x00"},
		// As the generated code returns GetB(): set but empty is an
		// empty key, not none.
		{"b", map[string]protoreflect.Value{"b": protoreflect.ValueOfBytes([]byte{})}, ""},
		{"b", nil, "<nil>"},
		{"flag", map[string]protoreflect.Value{"flag": protoreflect.ValueOfBool(true)}, "true"},
		{"flag", nil, "false"},
		{"i32", map[string]protoreflect.Value{"i32": protoreflect.ValueOfInt32(-42)}, "-42"},
		{"s64", map[string]protoreflect.Value{"s64": protoreflect.ValueOfInt64(1 << 40)}, "1099511627776"},
		{"u32", map[string]protoreflect.Value{"u32": protoreflect.ValueOfUint32(4000000000)}, "4000000000"},
		{"f64", map[string]protoreflect.Value{"f64": protoreflect.ValueOfUint64(1<<64 - 1)}, "18446744073709551615"},
		{"color", map[string]protoreflect.Value{"color": protoreflect.ValueOfEnum(7)}, "7"},
		{"inner.id", nil, "<nil>"},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.wantKey, func(t *testing.T) {
			mt := eventType(t, &kafkav1.EventOptions{Key: tc.key})
			spec, err := kafkatransport.EventSpecOf(mt)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Name != "t.v1.E" || spec.Topic != "" {
				t.Fatalf("spec name %q topic %q, want t.v1.E and the default topic", spec.Name, spec.Topic)
			}
			ev := spec.New()
			for name, v := range tc.set {
				ev.ProtoReflect().Set(mt.Descriptor().Fields().ByName(protoreflect.Name(name)), v)
			}
			got := "<nil>"
			if k := spec.Key(ev); k != nil {
				got = string(k)
			}
			if got != tc.wantKey {
				t.Fatalf("key = %q, want %q", got, tc.wantKey)
			}
		})
	}
	t.Run("nested key and topic", func(t *testing.T) {
		mt := eventType(t, &kafkav1.EventOptions{Key: "inner.id", Topic: "custom.topic"})
		spec, err := kafkatransport.EventSpecOf(mt)
		if err != nil {
			t.Fatal(err)
		}
		ev := spec.New()
		inner := ev.ProtoReflect().Mutable(mt.Descriptor().Fields().ByName("inner")).Message()
		inner.Set(inner.Descriptor().Fields().ByName("id"), protoreflect.ValueOfString("in-1"))
		if k := string(spec.Key(ev)); k != "in-1" || spec.Topic != "custom.topic" {
			t.Fatalf("key %q topic %q, want in-1 and custom.topic", k, spec.Topic)
		}
	})
}

func TestEventSpecOfRejects(t *testing.T) {
	tests := []struct {
		name string
		opts *kafkav1.EventOptions
		want string // in the error; "" for ErrNotEvent
	}{
		{"no option", nil, ""},
		{"empty key", &kafkav1.EventOptions{}, "needs a key field"},
		{"unknown field", &kafkav1.EventOptions{Key: "nope"}, `no field "nope"`},
		{"repeated", &kafkav1.EventOptions{Key: "tags"}, "repeated"},
		{"double", &kafkav1.EventOptions{Key: "ratio"}, "a key must be"},
		{"message", &kafkav1.EventOptions{Key: "inner"}, "a key must be"},
		{"dot after scalar", &kafkav1.EventOptions{Key: "s.x"}, "not a message"},
		{"unknown nested", &kafkav1.EventOptions{Key: "inner.nope"}, `no field "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafkatransport.EventSpecOf(eventType(t, tc.opts))
			switch {
			case err == nil:
				t.Fatal("accepted")
			case tc.want == "" && !errors.Is(err, kafkatransport.ErrNotEvent):
				t.Fatalf("err = %v, want ErrNotEvent", err)
			case tc.want != "" && (errors.Is(err, kafkatransport.ErrNotEvent) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if _, err := kafkatransport.EventSpecOf((&wrapperspb.StringValue{}).ProtoReflect().Type()); !errors.Is(err, kafkatransport.ErrNotEvent) {
		t.Fatalf("StringValue: err = %v, want ErrNotEvent", err)
	}
}

// The spec read from a generated event's descriptor is the generated spec.
func TestEventSpecOfMatchesGenerated(t *testing.T) {
	ev := &testingv1.Pinged{Id: "p-1", Seq: 3}
	spec, err := kafkatransport.EventSpecOf(ev.ProtoReflect().Type())
	if err != nil {
		t.Fatal(err)
	}
	gen := testingv1.PingedKafkaEvent
	if spec.Name != gen.Name || (spec.Topic != gen.Topic && !(spec.Topic == "" && gen.Topic == gen.Name)) {
		t.Fatalf("spec %q/%q, generated %q/%q", spec.Name, spec.Topic, gen.Name, gen.Topic)
	}
	if got, want := string(spec.Key(ev)), string(gen.Key(ev)); got != want {
		t.Fatalf("key %q, generated %q", got, want)
	}
	if _, ok := spec.New().(*testingv1.Pinged); !ok {
		t.Fatalf("New() = %T, want *Pinged", spec.New())
	}
}

// KeyFuncOf computes a method's partition key from descriptors alone as the
// generated key function does, for generated and dynamic messages alike.
func TestKeyFuncOf(t *testing.T) {
	md := (&testingv1.EchoRequest{}).ProtoReflect().Descriptor()
	key, err := kafkatransport.KeyFuncOf(md, "key")
	if err != nil {
		t.Fatal(err)
	}
	generated := testingv1.EchoServiceKafkaSpec.Keys[testingv1.EchoService_Echo_FullMethodName]
	req := &testingv1.EchoRequest{Key: "k-1", Message: "m"}
	if got, want := string(key(req)), string(generated(req)); got != want || got != "k-1" {
		t.Fatalf("KeyFuncOf = %q, generated %q", got, want)
	}
	dyn := dynamicpb.NewMessage(md)
	dyn.Set(md.Fields().ByName("key"), protoreflect.ValueOfString("k-2"))
	if got := string(key(dyn)); got != "k-2" {
		t.Fatalf("KeyFuncOf of a dynamic message = %q", got)
	}
	if key(&testingv1.EchoRequest{}) != nil || key(&testingv1.FailRequest{}) != nil {
		t.Fatal("an empty key or another message type gave a key")
	}
	if _, err := kafkatransport.KeyFuncOf(md, "nope"); err == nil {
		t.Fatal("a path with no such field was accepted")
	}
}
