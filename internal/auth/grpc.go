package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
)

// PrincipalKey is the call metadata key in which the gateway names the user
// it verified: "<role> <token version> <user id>". Services trust it only
// on a request the transport's Guard authenticated as produced by a unit
// allowed to assert users (InterceptorConfig.Asserters): the gateway
// verifies the user's token, which never goes on the bus itself.
const PrincipalKey = "kgrpc-principal"

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

// ErrAuthRequired is the Unauthenticated error of a call that needs a user
// and carried no token (Require's). The gateway answers it too, to an
// anonymous request of a route that is not public.
var ErrAuthRequired = status.Error(codes.Unauthenticated, "authentication required: send a bearer token")

// Require returns the caller's claims, or ErrAuthRequired when the call
// carried no valid token.
func Require(ctx context.Context) (Claims, error) {
	c, ok := FromContext(ctx)
	if !ok {
		return Claims{}, ErrAuthRequired
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

// Principal returns the PrincipalKey value naming the user of c.
func Principal(c Claims) string {
	return string(c.Role) + " " + strconv.FormatInt(c.TokenVersion, 10) + " " + c.Subject
}

// parsePrincipal parses a PrincipalKey value.
func parsePrincipal(v string) (Claims, error) {
	role, rest, ok1 := strings.Cut(v, " ")
	ver, sub, ok2 := strings.Cut(rest, " ")
	n, err := strconv.ParseInt(ver, 10, 64)
	if !ok1 || !ok2 || err != nil || sub == "" || (Role(role) != RoleCustomer && Role(role) != RoleAdmin) {
		return Claims{}, fmt.Errorf("malformed %s metadata", PrincipalKey)
	}
	return Claims{Subject: sub, Role: Role(role), TokenVersion: n}, nil
}

// InterceptorConfig configures UnaryServerInterceptor.
type InterceptorConfig struct {
	// Asserters are the units whose requests may name a user
	// (PrincipalKey): the gateway.
	Asserters []string
	// Revoked, when set, reports why the tokens of user id at version are
	// revoked (a newer version exists, or the account was deleted), or nil.
	Revoked func(id string, version int64) error
	// Public, when set, reports whether anyone may call a method (a full
	// method name, "/shop.users.v1.UserService/Login") without claims; a
	// call of any other method without claims fails Unauthenticated
	// before the interceptors after this one (request validation) and
	// the handler run, so an anonymous caller learns nothing else of a
	// method it may not call. Nil leaves every method to its handler
	// (Require, RequireAdmin).
	Public func(method string) bool
	// Admin, when set, reports whether a method is for admins only, for
	// every caller (not "admins or the owner", which only the handler can
	// tell). A call of such a method by anyone but an admin fails as
	// RequireAdmin fails (Unauthenticated without claims, PermissionDenied
	// otherwise) before the interceptors after this one (request
	// validation) run, so a customer sending an invalid request to an
	// admin route learns it may not call it, not what is wrong with the
	// request. The handlers keep their own RequireAdmin, the same rule and
	// message, for a service run without this interceptor.
	Admin func(method string) bool
}

// UnaryServerInterceptor puts the caller's claims in the context
// (FromContext), from the unit that produced the request, as the
// transport's Guard authenticated it (kafkatransport.RequestFromContext):
//
//   - a request of an asserting unit (the gateway) carries the user it
//     verified in PrincipalKey metadata, or none for an anonymous call;
//     a revoked user's call fails Unauthenticated;
//   - a request of any other unit is that unit calling as itself: claims
//     with its name and RoleService (the Guard has already checked that
//     the unit may call the method).
//
// A call without an authenticated producer has no claims, whatever its
// metadata says: with InterceptorConfig.Public, it fails Unauthenticated
// unless its method is public; without, the handler decides (Require,
// RequireAdmin). A call of an admin-only method (InterceptorConfig.Admin)
// by anyone but an admin fails as RequireAdmin does. Bearer tokens in metadata are ignored: they
// never go on the bus.
func UnaryServerInterceptor(cfg InterceptorConfig) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := cfg.callerContext(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// RevocationCheckInterval is how often StreamServerInterceptor checks
// whether the user of a running stream had its tokens revoked.
const RevocationCheckInterval = time.Second

// StreamServerInterceptor is UnaryServerInterceptor for streams: the
// caller's claims come from the stream's opening record. A stream outlives
// the check made when it opened, so a user's stream is checked again every
// RevocationCheckInterval while it runs, and one whose user's tokens were
// revoked meanwhile ends with Unauthenticated: its handler's context is
// cancelled.
func StreamServerInterceptor(cfg InterceptorConfig) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := cfg.callerContext(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if c, ok := FromContext(ctx); ok && c.Role != RoleService && cfg.Revoked != nil {
			var cancel context.CancelCauseFunc
			ctx, cancel = context.WithCancelCause(ctx)
			defer cancel(nil)
			go cfg.watchRevocation(ctx, c, cancel)
		}
		w := middleware.WrapServerStream(ss)
		w.WrappedContext = ctx
		err = handler(srv, w)
		if cause := context.Cause(ctx); errors.Is(cause, errRevokedMidStream) {
			return status.Errorf(codes.Unauthenticated, "%v", cause)
		}
		return err
	}
}

// errRevokedMidStream is the cause of a stream ended by watchRevocation.
var errRevokedMidStream = errors.New("token revoked while the stream ran")

// watchRevocation cancels ctx, with errRevokedMidStream, once the tokens of
// c's user are revoked; it returns when ctx ends.
func (cfg InterceptorConfig) watchRevocation(ctx context.Context, c Claims, cancel context.CancelCauseFunc) {
	t := time.NewTicker(RevocationCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := cfg.Revoked(c.Subject, c.TokenVersion); err != nil && !errors.Is(err, ErrNotCaughtUp) {
				cancel(fmt.Errorf("%w: %v", errRevokedMidStream, err))
				return
			}
		}
	}
}

// callerContext returns ctx with the caller's claims, as
// UnaryServerInterceptor describes, or the error that refuses the call of
// method.
func (cfg InterceptorConfig) callerContext(ctx context.Context, method string) (context.Context, error) {
	ri, _ := kafkatransport.RequestFromContext(ctx)
	switch {
	case ri.Caller == "":
	case slices.Contains(cfg.Asserters, ri.Caller):
		vs := metadata.ValueFromIncomingContext(ctx, PrincipalKey)
		if len(vs) == 0 {
			break
		}
		c, err := parsePrincipal(vs[0])
		if err != nil || len(vs) > 1 {
			return nil, status.Errorf(codes.Unauthenticated, "malformed %s metadata", PrincipalKey)
		}
		if cfg.Revoked != nil {
			if err := cfg.Revoked(c.Subject, c.TokenVersion); errors.Is(err, ErrNotCaughtUp) {
				return nil, status.Error(codes.Unavailable, "token revocations not read yet; retry")
			} else if err != nil {
				return nil, status.Errorf(codes.Unauthenticated, "token revoked: %v", err)
			}
		}
		ctx = NewContext(ctx, c)
	default:
		ctx = NewContext(ctx, Claims{Subject: ri.Caller, Role: RoleService})
	}
	if _, ok := FromContext(ctx); !ok && cfg.Public != nil && !cfg.Public(method) {
		_, err := Require(ctx)
		return nil, err
	}
	if cfg.Admin != nil && cfg.Admin(method) {
		if _, err := RequireAdmin(ctx); err != nil {
			return nil, err
		}
	}
	return ctx, nil
}
