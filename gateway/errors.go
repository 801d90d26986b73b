package gateway

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// errorBody is the one JSON error format of the API.
type errorBody struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

// errorHandler is the ServeMux's error handler: every error of a call, or
// of decoding its request, in the API's format. A replayed error answer
// (see ReplayedHeader) says so, as a replayed success does.
//
// Field paths are in the API's JSON names (jsonFieldNames), found from the
// request message of the call's RPC method (runtime.RPCMethod).
func errorHandler(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
		if v := md.HeaderMD.Get(idempotency.ReplayedHeader); len(v) > 0 {
			w.Header().Set(ReplayedHeader, v[0])
		}
	}
	var req protoreflect.MessageDescriptor
	if m, ok := runtime.RPCMethod(ctx); ok {
		req = requestDescriptor(m)
	}
	writeErrorOf(w, r, err, req)
}

// routingErrorHandler is the ServeMux's handler of requests no route takes:
// 404 NOT_FOUND naming the method and path, 405 UNIMPLEMENTED for a path
// without the method.
func routingErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	*routeOf(r) = routeNone
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeJSON(w, httpStatus, errorBody{Code: "UNIMPLEMENTED", Message: "method not allowed", Details: []json.RawMessage{}})
	case http.StatusNotFound:
		writeError(w, r, status.Errorf(codes.NotFound, "no route for %s %s", r.Method, r.URL.Path))
	default:
		writeError(w, r, status.Error(codes.InvalidArgument, http.StatusText(httpStatus)))
	}
}

// writeError writes err in the API's error format with the status code's
// HTTP status. An error without a gRPC code (Unknown) of a request whose
// context ended is that context's error: DEADLINE_EXCEEDED or CANCELLED.
// A 401 carries a WWW-Authenticate challenge, and an error with a
// google.rpc.RetryInfo detail a Retry-After header (whole seconds, at least
// 1): the 503 UNAVAILABLE of a call the gateway's breaker refused, say.
//
// Errors of decoding a request get words without Go internals and their
// own statuses (decodeError: 408 for a slow body, 413 for a large one), and
// a request too large for the message bus is 413, not the 429 of other
// ResourceExhausted errors.
func writeError(w http.ResponseWriter, r *http.Request, err error) { writeErrorOf(w, r, err, nil) }

// writeErrorOf is writeError for an error of a call whose request message
// is req (nil when unknown): the field paths it names, in its
// google.rpc.BadRequest details, its message or a parameter that did not
// decode, are in JSON names (jsonFieldNames, jsonFieldPath).
func writeErrorOf(w http.ResponseWriter, r *http.Request, err error, req protoreflect.MessageDescriptor) {
	st := status.Convert(err)
	if ctxErr := r.Context().Err(); ctxErr != nil && st.Code() == codes.Unknown {
		st = status.FromContextError(ctxErr)
	}
	st = jsonFieldNames(st, req)
	httpStatus, msg := runtime.HTTPStatusFromCode(st.Code()), st.Message()
	switch {
	case st.Code() == codes.InvalidArgument && len(st.Proto().GetDetails()) == 0:
		// grpc-gateway's own decoding errors, which carry no details, are
		// reworded; a worded error (a service's, an import line's) is not,
		// as its text may quote what the client sent.
		if code, text, ok := decodeError(msg, exchangeOf(r).maxBody, func(path string) string { return jsonFieldPath(req, path) }); ok {
			httpStatus, msg = code, text
		}
	case st.Code() == codes.ResourceExhausted && tooLarge(st):
		httpStatus, msg = http.StatusRequestEntityTooLarge, "request too large to send to the service"
	}
	body := errorBody{Code: rpccode.Code(st.Code()).String(), Message: msg, Details: []json.RawMessage{}}
	for _, d := range st.Proto().GetDetails() {
		if b, err := protojson.Marshal(d); err == nil {
			body.Details = append(body.Details, b)
		}
	}
	if st.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shop"`)
	}
	if d, ok := retryDelay(st); ok {
		setRetryAfter(w, d)
	}
	writeJSON(w, httpStatus, body)
}

// retryDelay returns the delay of st's google.rpc.RetryInfo detail, as a
// service or the client's breaker (kafkatransport/breaker: 503 for a
// circuit open or too many calls in flight) gives it.
func retryDelay(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// setRetryAfter sets the Retry-After header to d in whole seconds, rounded
// up and at least 1, and returns them.
func setRetryAfter(w http.ResponseWriter, d time.Duration) int {
	secs := max(1, int(math.Ceil(d.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return secs
}

// tooLarge reports whether st is the transport's refusal of a request too
// large for the broker.
func tooLarge(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == kafkatransport.ErrorDomain && info.GetReason() == kafkatransport.ReasonRequestTooLarge {
			return true
		}
	}
	return false
}

// writeJSON writes v as JSON with the HTTP status code, without escaping
// <, > and & (an error's `"Bearer <token>"` reads as written): the body is
// application/json, never HTML.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
