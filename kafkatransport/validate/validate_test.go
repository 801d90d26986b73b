package validate_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	kvalidate "github.com/kgrpc/platform/kafkatransport/validate"
)

// signupType builds, at run time, the message
//
//	message Signup {
//	  string email = 1 [(buf.validate.field).string.email = true];
//	  string name = 2 [(buf.validate.field).string = {min_len: 1, max_len: 5}];
//	  repeated int32 ages = 3 [(buf.validate.field).repeated.items.int32.gte = 0];
//	}
func signupType(t *testing.T) protoreflect.MessageType {
	t.Helper()
	rules := func(r *validate.FieldRules) *descriptorpb.FieldOptions {
		o := &descriptorpb.FieldOptions{}
		proto.SetExtension(o, validate.E_Field, r)
		return o
	}
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("kgrpc/validatetest/signup.proto"),
		Package:    proto.String("kgrpc.validatetest"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"buf/validate/validate.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Signup"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("email"), JsonName: proto.String("email"), Number: proto.Int32(1), Type: str, Label: opt,
					Options: rules(&validate.FieldRules{Type: &validate.FieldRules_String_{String_: &validate.StringRules{WellKnown: &validate.StringRules_Email{Email: true}}}})},
				{Name: proto.String("name"), JsonName: proto.String("name"), Number: proto.Int32(2), Type: str, Label: opt,
					Options: rules(&validate.FieldRules{Type: &validate.FieldRules_String_{String_: &validate.StringRules{MinLen: proto.Uint64(1), MaxLen: proto.Uint64(5)}}})},
				{Name: proto.String("ages"), JsonName: proto.String("ages"), Number: proto.Int32(3), Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(),
					Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
					Options: rules(&validate.FieldRules{Type: &validate.FieldRules_Repeated{Repeated: &validate.RepeatedRules{
						Items: &validate.FieldRules{Type: &validate.FieldRules_Int32{Int32: &validate.Int32Rules{GreaterThan: &validate.Int32Rules_Gte{Gte: 0}}}}}}})},
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return dynamicpb.NewMessageType(fd.Messages().ByName("Signup"))
}

func newSignup(mt protoreflect.MessageType, email, name string, ages ...int32) proto.Message {
	m := mt.New()
	fields := m.Descriptor().Fields()
	m.Set(fields.ByName("email"), protoreflect.ValueOfString(email))
	m.Set(fields.ByName("name"), protoreflect.ValueOfString(name))
	list := m.Mutable(fields.ByName("ages")).List()
	for _, a := range ages {
		list.Append(protoreflect.ValueOfInt32(a))
	}
	return m.Interface()
}

func newValidator(t *testing.T) protovalidate.Validator {
	t.Helper()
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUnaryListsEveryViolation: three broken rules give one
// InvalidArgument with three field violations, in field order, and the
// handler does not run; a valid request reaches it.
func TestUnaryListsEveryViolation(t *testing.T) {
	mt, v := signupType(t), newValidator(t)
	intercept := kvalidate.UnaryServerInterceptor(v)
	ran := 0
	handler := func(context.Context, any) (any, error) { ran++; return "ok", nil }

	_, err := intercept(t.Context(), newSignup(mt, "not an email", "far too long", 3, -1), &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}, handler)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || ran != 0 {
		t.Fatalf("err = %v, handler ran %d times; want InvalidArgument and no run", err, ran)
	}
	var br *errdetails.BadRequest
	for _, d := range st.Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil {
		t.Fatalf("no BadRequest detail in %v", st.Proto())
	}
	want := []struct{ field, reason string }{
		{"email", "string.email"},
		{"name", "string.max_len"},
		{"ages[1]", "int32.gte"},
	}
	if len(br.GetFieldViolations()) != len(want) {
		t.Fatalf("violations = %v, want %d", br.GetFieldViolations(), len(want))
	}
	for i, w := range want {
		fv := br.GetFieldViolations()[i]
		if fv.GetField() != w.field || fv.GetReason() != w.reason || fv.GetDescription() == "" {
			t.Errorf("violation %d = %v, want field %q reason %q with a description", i, fv, w.field, w.reason)
		}
	}
	if msg := st.Message(); msg != "invalid request: email: "+br.GetFieldViolations()[0].GetDescription()+"; name: "+br.GetFieldViolations()[1].GetDescription()+"; ages[1]: "+br.GetFieldViolations()[2].GetDescription() {
		t.Errorf("message = %q", msg)
	}

	resp, err := intercept(t.Context(), newSignup(mt, "ann@example.com", "Ann", 0, 30), &grpc.UnaryServerInfo{}, handler)
	if err != nil || resp != "ok" || ran != 1 {
		t.Fatalf("valid request: %v, %v, handler ran %d times", resp, err, ran)
	}
	// Not a protobuf message: nothing to check.
	if _, err := intercept(t.Context(), "plain", &grpc.UnaryServerInfo{}, handler); err != nil || ran != 2 {
		t.Fatalf("non-proto request: %v, ran %d", err, ran)
	}
}

// TestWrapChecksFirst: Wrap runs the handler only for valid requests.
func TestWrapChecksFirst(t *testing.T) {
	mt, v := signupType(t), newValidator(t)
	ran := 0
	h := kvalidate.Wrap(v, func(_ context.Context, m proto.Message) (int, error) { ran++; return 7, nil })
	if n, err := h(t.Context(), newSignup(mt, "", "")); status.Code(err) != codes.InvalidArgument || n != 0 || ran != 0 {
		t.Fatalf("invalid: %d, %v, ran %d", n, err, ran)
	}
	if n, err := h(t.Context(), newSignup(mt, "a@b.example", "x")); err != nil || n != 7 || ran != 1 {
		t.Fatalf("valid: %d, %v, ran %d", n, err, ran)
	}
}

// fakeStream is a server stream that receives msgs, then io.EOF.
type fakeStream struct {
	grpc.ServerStream
	msgs []proto.Message
}

func (s *fakeStream) Context() context.Context { return context.Background() }
func (s *fakeStream) RecvMsg(m any) error {
	if len(s.msgs) == 0 {
		return io.EOF
	}
	proto.Merge(m.(proto.Message), s.msgs[0])
	s.msgs = s.msgs[1:]
	return nil
}

// TestStreamChecksServerStreamRequests: the request of a server stream is
// checked as it is received; a client stream's messages are the handler's
// to check.
func TestStreamChecksServerStreamRequests(t *testing.T) {
	mt, v := signupType(t), newValidator(t)
	intercept := kvalidate.StreamServerInterceptor(v)
	recv := func(_ any, ss grpc.ServerStream) error {
		return ss.RecvMsg(mt.New().Interface())
	}
	bad := newSignup(mt, "x", "")
	err := intercept(nil, &fakeStream{msgs: []proto.Message{bad}}, &grpc.StreamServerInfo{IsServerStream: true}, recv)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("server stream: %v, want InvalidArgument", err)
	}
	err = intercept(nil, &fakeStream{msgs: []proto.Message{bad}}, &grpc.StreamServerInfo{IsClientStream: true}, recv)
	if err != nil {
		t.Fatalf("client stream: %v, want the message unchecked", err)
	}
	err = intercept(nil, &fakeStream{}, &grpc.StreamServerInfo{IsServerStream: true}, recv)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v, want io.EOF unchanged", err)
	}
}
