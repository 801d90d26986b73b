package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An anonymous call (no authenticated producer) of a method that is not
// public fails Unauthenticated before the handler, and the interceptors
// after this one, run; a public method's handler runs without claims;
// without Public, every handler decides.
func TestPublicMethods(t *testing.T) {
	public := func(m string) bool { return m == "/x.v1.S/Open" }
	tests := []struct {
		name   string
		public func(string) bool
		method string
		want   codes.Code
		ran    bool
	}{
		{"not public", public, "/x.v1.S/Closed", codes.Unauthenticated, false},
		{"public", public, "/x.v1.S/Open", codes.OK, true},
		{"no Public", nil, "/x.v1.S/Closed", codes.OK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := InterceptorConfig{Public: tt.public}
			ran := false
			handler := func(ctx context.Context, _ any) (any, error) {
				ran = true
				if _, ok := FromContext(ctx); ok {
					t.Error("an anonymous call has claims")
				}
				return "ok", nil
			}
			_, err := UnaryServerInterceptor(cfg)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, handler)
			if status.Code(err) != tt.want || ran != tt.ran {
				t.Fatalf("err %v, handler ran %v; want %v, %v", err, ran, tt.want, tt.ran)
			}
			streamRan := false
			err = StreamServerInterceptor(cfg)(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: tt.method}, func(any, grpc.ServerStream) error {
				streamRan = true
				return nil
			})
			if status.Code(err) != tt.want || streamRan != tt.ran {
				t.Fatalf("stream: err %v, handler ran %v; want %v, %v", err, streamRan, tt.want, tt.ran)
			}
		})
	}
}

type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }
