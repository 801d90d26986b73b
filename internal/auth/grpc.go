package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MetadataKey is the metadata key carrying "Bearer <token>".
const MetadataKey = "authorization"

type claimsKey struct{}

// NewContext returns ctx carrying verified claims.
func NewContext(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the verified claims of the caller, if any.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// Require returns the caller's claims, or an Unauthenticated error when the
// call carried no valid token.
func Require(ctx context.Context) (Claims, error) {
	c, ok := FromContext(ctx)
	if !ok {
		return Claims{}, status.Error(codes.Unauthenticated, "authentication required: send a bearer token")
	}
	return c, nil
}

// RequireAdmin returns the caller's claims when the caller is an admin;
// Unauthenticated without a token, PermissionDenied for anyone else.
func RequireAdmin(ctx context.Context) (Claims, error) {
	c, err := Require(ctx)
	if err != nil {
		return c, err
	}
	if c.Role != RoleAdmin {
		return c, status.Error(codes.PermissionDenied, "admin role required")
	}
	return c, nil
}

// BearerFromMetadata returns the token of an "authorization: Bearer <token>"
// entry, or "".
func BearerFromMetadata(md metadata.MD) string {
	for _, v := range md.Get(MetadataKey) {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		if t, ok := strings.CutPrefix(v, "bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}

// UnaryServerInterceptor verifies the bearer token of every call that has
// one and puts its claims in the context (FromContext). A call with an
// invalid or expired token fails Unauthenticated; a call with none goes on
// without claims, and the handler decides (Require, RequireAdmin), since some
// methods are public.
func UnaryServerInterceptor(s *Signer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		tok := BearerFromMetadata(md)
		if tok == "" {
			return handler(ctx, req)
		}
		c, err := s.Verify(tok)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(NewContext(ctx, c), req)
	}
}

// OutgoingContext returns ctx with the token as outgoing call metadata.
func OutgoingContext(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MetadataKey, "Bearer "+token)
}
