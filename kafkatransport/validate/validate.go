// Package validate enforces the buf.validate rules of request messages
// (protovalidate, https://protovalidate.com) in server interceptors, so
// that the rules written in the protos are the one place a service's input
// limits live.
//
// An invalid request is refused before its handler runs with
// InvalidArgument and a google.rpc.BadRequest detail that lists every
// violation, each with its field path in protobuf field names
// ("items[0].quantity"), the rule's words and the rule's id as the
// reason. A rule that is not a field's (a message-level CEL rule) has an
// empty field path. Rules that depend on state (stock, ownership, a
// lifecycle) belong in the handlers, not here.
//
// The interceptors work on any gRPC server, kafkatransport's included:
//
//	v, err := protovalidate.New()
//	...
//	kafkatransport.NewServer(brokers,
//		kafkatransport.WithUnaryServerInterceptors(validate.UnaryServerInterceptor(v)),
//		kafkatransport.WithStreamServerInterceptors(validate.StreamServerInterceptor(v)))
package validate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// UnaryServerInterceptor returns a server interceptor that checks each
// request against its message's rules with v and answers Check's error
// instead of calling the handler when it fails.
func UnaryServerInterceptor(v protovalidate.Validator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := Check(v, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor returns a stream server interceptor that checks
// the request of a server-streaming method (one message, then the
// server's stream) with v as it is received: an invalid one ends the
// stream with Check's error before the handler sees it.
//
// The messages of client-streaming and bidirectional methods are not
// checked: each handler decides whether a bad message fails the stream or
// is reported and skipped (as an import that rejects one bad line of many
// does), and calls Check itself.
func StreamServerInterceptor(v protovalidate.Validator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.IsClientStream {
			return handler(srv, ss)
		}
		return handler(srv, &checkedStream{ServerStream: ss, v: v})
	}
}

// checkedStream checks every message it receives.
type checkedStream struct {
	grpc.ServerStream
	v protovalidate.Validator
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return Check(s.v, m)
}

// Check checks msg against its rules with v. It returns nil when msg is
// valid or not a protobuf message; InvalidArgument with a
// google.rpc.BadRequest detail listing every violation when it is not
// valid; and Internal when the rules themselves cannot be evaluated (a
// rule that does not compile is the server's bug, not the caller's).
func Check(v protovalidate.Validator, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	err := v.Validate(m)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		return status.Errorf(codes.Internal, "validate %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return Status(verr).Err()
}

// MessagePrefix begins the message of every status Check returns for an
// invalid request.
const MessagePrefix = "invalid request: "

// Status returns the InvalidArgument status of a validation error: its
// message names every violation ("invalid request: email: value must be
// a valid email address; password: value length must be at least 8
// characters"), and its google.rpc.BadRequest detail has one field
// violation per rule broken.
func Status(verr *protovalidate.ValidationError) *status.Status {
	br := &errdetails.BadRequest{FieldViolations: make([]*errdetails.BadRequest_FieldViolation, 0, len(verr.Violations))}
	words := make([]string, 0, len(verr.Violations))
	for _, v := range verr.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
		msg := v.Proto.GetMessage()
		if msg == "" {
			msg = fmt.Sprintf("breaks rule %s", v.Proto.GetRuleId())
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       field,
			Description: msg,
			Reason:      v.Proto.GetRuleId(),
		})
		if field != "" {
			msg = field + ": " + msg
		}
		words = append(words, msg)
	}
	st := status.New(codes.InvalidArgument, MessagePrefix+strings.Join(words, "; "))
	if withDetails, err := st.WithDetails(br); err == nil {
		st = withDetails
	}
	return st
}

// Wrap returns handler h with each request checked first, as
// UnaryServerInterceptor checks it: for calling a service's methods
// directly, as its tests do, with the rules that guard them on a server.
//
//	createProduct := validate.Wrap(v, svc.CreateProduct)
//	_, err := createProduct(ctx, &productsv1.CreateProductRequest{})
func Wrap[Req, Resp any](v protovalidate.Validator, h func(context.Context, Req) (Resp, error)) func(context.Context, Req) (Resp, error) {
	return func(ctx context.Context, req Req) (Resp, error) {
		if err := Check(v, req); err != nil {
			var zero Resp
			return zero, err
		}
		return h(ctx, req)
	}
}
