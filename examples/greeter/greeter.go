// Package greeter is the greeter service: a protobuf service served and
// called over Kafka with github.com/kgrpc/platform/kafkatransport.
package greeter

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	greeterv1 "example.com/greeter/gen/greeter/v1"
)

// Server implements greeterv1.GreeterServiceServer.
type Server struct {
	greeterv1.UnimplementedGreeterServiceServer
}

// SayHello greets req's name.
func (Server) SayHello(_ context.Context, req *greeterv1.SayHelloRequest) (*greeterv1.SayHelloResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	return &greeterv1.SayHelloResponse{Message: "Hello, " + req.GetName() + "!"}, nil
}
