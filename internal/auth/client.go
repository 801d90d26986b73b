package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The lifetime of service tokens unless a caller chooses otherwise.
const (
	// DefaultServiceTokenTTL is how long a minted service token lasts.
	DefaultServiceTokenTTL = 10 * time.Minute
	// DefaultServiceTokenRenew is how long before its expiry a cached
	// service token is replaced by a new one.
	DefaultServiceTokenRenew = 2 * time.Minute
)

// ServiceTokenInterceptor returns a unary client interceptor that presents
// a service token on every call: a token for subject with RoleService,
// minted by s, valid for ttl, as "authorization: Bearer <token>" outgoing
// metadata (replacing any the call carried), which is what
// UnaryServerInterceptor verifies on the other side. The token is cached
// and shared by all calls until renew before it expires, then minted anew.
// ttl must exceed renew. A call whose token cannot be minted fails
// Unauthenticated without being sent.
func ServiceTokenInterceptor(s *Signer, subject string, ttl, renew time.Duration) (grpc.UnaryClientInterceptor, error) {
	switch {
	case s == nil:
		return nil, errors.New("auth: service token: nil Signer")
	case subject == "":
		return nil, errors.New("auth: service token: empty subject")
	case renew < 0 || ttl <= renew:
		return nil, fmt.Errorf("auth: service token: ttl %v must exceed renew %v (>= 0)", ttl, renew)
	}
	t := &serviceToken{signer: s, subject: subject, ttl: ttl, renew: renew}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		tok, err := t.get()
		if err != nil {
			return status.Errorf(codes.Unauthenticated, "auth: mint service token: %v", err)
		}
		md, _ := metadata.FromOutgoingContext(ctx)
		md = md.Copy()
		md.Set(MetadataKey, "Bearer "+tok)
		return invoke(metadata.NewOutgoingContext(ctx, md), method, req, reply, cc, opts...)
	}, nil
}

// WithServiceToken returns cc with ServiceTokenInterceptor(s, subject, ttl,
// renew) around every unary call, for a client that calls other services as
// a service (for example the order service's product client). It works on
// any grpc.ClientConnInterface, so it needs no option of the transport.
// Streams pass through unchanged.
func WithServiceToken(cc grpc.ClientConnInterface, s *Signer, subject string, ttl, renew time.Duration) (grpc.ClientConnInterface, error) {
	ic, err := ServiceTokenInterceptor(s, subject, ttl, renew)
	if err != nil {
		return nil, err
	}
	return &interceptedConn{ClientConnInterface: cc, ic: ic}, nil
}

// interceptedConn runs every unary call of a ClientConnInterface through a
// unary client interceptor.
type interceptedConn struct {
	grpc.ClientConnInterface
	ic grpc.UnaryClientInterceptor
}

// Invoke implements grpc.ClientConnInterface.
func (c *interceptedConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.ic(ctx, method, args, reply, nil, func(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
	}, opts...)
}

// serviceToken mints and caches one subject's service token.
type serviceToken struct {
	signer     *Signer
	subject    string
	ttl, renew time.Duration

	mu    sync.Mutex // guards token and exp
	token string
	exp   time.Time
}

// get returns the cached token, minting a new one when there is none or it
// expires within renew.
func (t *serviceToken) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == "" || t.exp.Sub(t.signer.now()) < t.renew {
		tok, exp, err := t.signer.Issue(t.subject, RoleService, t.ttl)
		if err != nil {
			return "", err
		}
		t.token, t.exp = tok, exp
	}
	return t.token, nil
}
