package gateway

import (
	"context"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"

	"github.com/kgrpc/platform/internal/auth"
)

// An anonymous request (no Authorization header: verifyBearer let it go on
// without claims) of a route whose RPC method is not public (Config.Public)
// is refused 401 by the gateway before anything of it is decoded: its body
// or query, decoded first, would otherwise answer 400 to a caller who is
// not allowed to learn more than "authenticate". A present but bad token
// is verifyBearer's business, and a well-formed anonymous request would
// get the same 401 from the service.
//
// Which RPC method a route calls is known to the handler grpc-gateway
// generated for it (and to the gateway's own, dashboard and import), which
// names it to runtime.AnnotateContext first thing, before it decodes. The
// mux's metadata annotator (callMetadata) runs inside that call with the
// method in its context: for an anonymous request of a method that is not
// public it stops the handler with a credentialsRequired panic, which
// refuseAnonymous, a mux middleware around every handler, recovers into
// the 401. No route table is kept beside the HTTP rules (proto/http.yaml)
// to drift from them.

// credentialsRequired is the panic value with which callMetadata stops the
// handler of an anonymous request of a method that is not public.
type credentialsRequired struct{}

// refuseAnonymous is a grpc-gateway middleware: it answers the 401 of an
// anonymous request that callMetadata stopped (see credentialsRequired),
// with the services' error (auth.ErrAuthRequired) and its
// WWW-Authenticate challenge.
func refuseAnonymous(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		defer func() {
			if v := recover(); v != nil {
				if _, ok := v.(credentialsRequired); !ok {
					panic(v)
				}
				writeError(w, r, auth.ErrAuthRequired)
			}
		}()
		next(w, r, params)
	}
}

// checkAnonymous panics with credentialsRequired when the request is
// anonymous and the RPC method in ctx (runtime.RPCMethod, set by
// runtime.AnnotateContext) is not public. public nil lets every request go
// on, for the services to decide.
func checkAnonymous(ctx context.Context, r *http.Request, public func(method string) bool) {
	if public == nil {
		return
	}
	if _, ok := r.Context().Value(claimsKey{}).(auth.Claims); ok {
		return
	}
	if m, ok := runtime.RPCMethod(ctx); ok && !public(m) {
		panic(credentialsRequired{})
	}
}

// callMetadata returns the ServeMux's metadata annotator: the request's id
// (RequestIDHeader), for the services' log lines, and the user
// verifyBearer verified, as auth.PrincipalKey metadata. One annotator
// rather than two: grpc-gateway joins every annotator's MD into a new one.
// It refuses an anonymous request of a method that is not public first
// (checkAnonymous).
func callMetadata(public func(method string) bool) func(context.Context, *http.Request) metadata.MD {
	return func(ctx context.Context, r *http.Request) metadata.MD {
		checkAnonymous(ctx, r, public)
		return requestMetadata(r)
	}
}
