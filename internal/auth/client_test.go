package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// loopback is a grpc.ClientConnInterface that hands each call's outgoing
// metadata, as incoming metadata, to the real UnaryServerInterceptor and
// records what the handler behind it saw.
type loopback struct {
	server grpc.UnaryServerInterceptor

	mu     sync.Mutex
	tokens []string
	claims []Claims
}

func (l *loopback) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	md, _ := metadata.FromOutgoingContext(ctx)
	in := metadata.NewIncomingContext(context.Background(), md)
	_, err := l.server(in, args, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
		c, err := Require(ctx)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.tokens = append(l.tokens, BearerFromMetadata(md))
		l.claims = append(l.claims, c)
		return nil, nil
	})
	return err
}

func (l *loopback) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "no streams")
}

func TestWithServiceToken(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := start
	s := &Signer{secret: []byte("0123456789abcdef0123"), now: func() time.Time { return now }}
	l := &loopback{server: UnaryServerInterceptor(s)}
	cc, err := WithServiceToken(l, s, "ordersvc", 10*time.Minute, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A caller's own token (a user's, say) is replaced by the service's.
	user, _, err := s.Issue("u_alice", RoleCustomer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		at        time.Duration // since start
		ctx       context.Context
		wantToken int // index of the distinct token the call must carry
	}{
		{"first call mints", 0, context.Background(), 0},
		{"cached", time.Minute, context.Background(), 0},
		{"still cached just before renew", 8*time.Minute - time.Second, context.Background(), 0},
		{"renewed near expiry", 8*time.Minute + time.Second, context.Background(), 1},
		{"cached again", 9 * time.Minute, context.Background(), 1},
		{"replaces the caller's token", 10 * time.Minute, OutgoingContext(context.Background(), user), 1},
		{"renewed after expiry", time.Hour, context.Background(), 2},
	}
	var distinct []string
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now = start.Add(st.at)
			if err := cc.Invoke(st.ctx, "/shop.products.v1.ProductService/ReserveStock", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			tok, c := l.tokens[i], l.claims[i]
			if len(distinct) == 0 || distinct[len(distinct)-1] != tok {
				distinct = append(distinct, tok)
			}
			if len(distinct)-1 != st.wantToken {
				t.Fatalf("call carries token #%d, want #%d (tokens %q)", len(distinct)-1, st.wantToken, distinct)
			}
			if c.Subject != "ordersvc" || c.Role != RoleService {
				t.Fatalf("server saw claims %+v, want subject ordersvc, role service", c)
			}
			if left := time.Unix(c.ExpiresAt, 0).Sub(now); left < 2*time.Minute {
				t.Fatalf("token expires in %v, want at least the 2m renew margin", left)
			}
		})
	}
}

func TestServiceTokenInterceptorRejects(t *testing.T) {
	s, err := NewSigner([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		s          *Signer
		subject    string
		ttl, renew time.Duration
	}{
		{"nil signer", nil, "ordersvc", time.Minute, 0},
		{"empty subject", s, "", time.Minute, 0},
		{"ttl not above renew", s, "ordersvc", time.Minute, time.Minute},
		{"zero ttl", s, "ordersvc", 0, 0},
		{"negative renew", s, "ordersvc", time.Minute, -time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ServiceTokenInterceptor(tc.s, tc.subject, tc.ttl, tc.renew); err == nil {
				t.Fatal("ServiceTokenInterceptor accepted an invalid configuration")
			}
			if _, err := WithServiceToken(&loopback{}, tc.s, tc.subject, tc.ttl, tc.renew); err == nil {
				t.Fatal("WithServiceToken accepted an invalid configuration")
			}
		})
	}
}
