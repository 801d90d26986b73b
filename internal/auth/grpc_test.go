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

// A call of an admin-only method by anyone but an admin fails before the
// handler, and the interceptors after this one (request validation), run,
// with RequireAdmin's error; an admin's call runs, as does any call of a
// method that is not admin-only, or of any method without Admin.
func TestAdminMethods(t *testing.T) {
	admin := func(m string) bool { return m == "/x.v1.S/Admin" }
	customer := Claims{Subject: "u1", Role: RoleCustomer}
	tests := []struct {
		name   string
		admin  func(string) bool
		claims *Claims
		method string
		want   codes.Code
		ran    bool
	}{
		{"customer, admin-only", admin, &customer, "/x.v1.S/Admin", codes.PermissionDenied, false},
		{"service, admin-only", admin, &Claims{Subject: "ordersvc", Role: RoleService}, "/x.v1.S/Admin", codes.PermissionDenied, false},
		{"anonymous, admin-only", admin, nil, "/x.v1.S/Admin", codes.Unauthenticated, false},
		{"admin, admin-only", admin, &Claims{Subject: "a1", Role: RoleAdmin}, "/x.v1.S/Admin", codes.OK, true},
		{"customer, other method", admin, &customer, "/x.v1.S/Other", codes.OK, true},
		{"customer, no Admin", nil, &customer, "/x.v1.S/Admin", codes.OK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := InterceptorConfig{Admin: tt.admin}
			ctx := context.Background()
			if tt.claims != nil {
				// Without an authenticated producer the interceptor keeps
				// the context's claims: these stand for the caller.
				ctx = NewContext(ctx, *tt.claims)
			}
			ran := false
			_, err := UnaryServerInterceptor(cfg)(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, func(context.Context, any) (any, error) {
				ran = true
				return "ok", nil
			})
			if status.Code(err) != tt.want || ran != tt.ran {
				t.Fatalf("err %v, handler ran %v; want %v, %v", err, ran, tt.want, tt.ran)
			}
			_, wantErr := RequireAdmin(ctx)
			if err != nil && err.Error() != wantErr.Error() {
				t.Errorf("err %v, want RequireAdmin's %v", err, wantErr)
			}
			streamRan := false
			err = StreamServerInterceptor(cfg)(nil, ctxStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: tt.method}, func(any, grpc.ServerStream) error {
				streamRan = true
				return nil
			})
			if status.Code(err) != tt.want || streamRan != tt.ran {
				t.Fatalf("stream: err %v, handler ran %v; want %v, %v", err, streamRan, tt.want, tt.ran)
			}
		})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }
