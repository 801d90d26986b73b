package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestErrorFormat(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	tests := []struct {
		code   codes.Code
		status int
		name   string
	}{
		{codes.Canceled, 499, "CANCELLED"},
		{codes.Unknown, 500, "UNKNOWN"},
		{codes.InvalidArgument, 400, "INVALID_ARGUMENT"},
		{codes.DeadlineExceeded, 504, "DEADLINE_EXCEEDED"},
		{codes.NotFound, 404, "NOT_FOUND"},
		{codes.AlreadyExists, 409, "ALREADY_EXISTS"},
		{codes.PermissionDenied, 403, "PERMISSION_DENIED"},
		{codes.ResourceExhausted, 429, "RESOURCE_EXHAUSTED"},
		{codes.FailedPrecondition, 400, "FAILED_PRECONDITION"},
		{codes.Aborted, 409, "ABORTED"},
		{codes.OutOfRange, 400, "OUT_OF_RANGE"},
		{codes.Unimplemented, 501, "UNIMPLEMENTED"},
		{codes.Internal, 500, "INTERNAL"},
		{codes.Unavailable, 503, "UNAVAILABLE"},
		{codes.DataLoss, 500, "DATA_LOSS"},
		{codes.Unauthenticated, 401, "UNAUTHENTICATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "GET", "/v1/products/code-"+strconv.Itoa(int(tt.code)), "")
			wantError(t, r, tt.status, tt.name, "failed with "+tt.code.String())
			if got, want := r.header.Get("WWW-Authenticate"), wwwAuthenticate(tt.status); got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
		})
	}

	t.Run("details in protojson with their @type", func(t *testing.T) {
		r := do(t, base, "GET", "/v1/products/code-9-details", "")
		want := map[string]any{
			"code":    "FAILED_PRECONDITION",
			"message": "failed with FailedPrecondition",
			"details": []any{
				map[string]any{
					"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
					"reason":   "OUT_OF_STOCK",
					"domain":   "shop.test",
					"metadata": map[string]any{"sku": "B-1"},
				},
				map[string]any{
					"@type":           "type.googleapis.com/google.rpc.BadRequest",
					"fieldViolations": []any{map[string]any{"field": "quantity", "description": "too many"}},
				},
			},
		}
		if r.status != 400 || !jsonEqual(r.json, want) {
			t.Errorf("%d %s, want 400 %s", r.status, r.raw, mustJSON(t, want))
		}
	})
}

func TestRequestErrors(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code, msg    string
	}{
		{"no route", "GET", "/v1/nope", "", 404, "NOT_FOUND", "no route for GET /v1/nope"},
		{"no route outside /v1", "GET", "/metrics", "", 404, "NOT_FOUND", "no route for GET /metrics"},
		{"method not allowed", "PUT", "/v1/users/u_1", "", 405, "UNIMPLEMENTED", "method not allowed"},
		{"POST to healthz", "POST", "/healthz", "", 404, "NOT_FOUND", "no route for POST /healthz"},
		{"a method the service does not implement", "GET", "/v1/users", "", 501, "UNIMPLEMENTED", "method ListUsers not implemented"},
		{"malformed JSON", "POST", "/v1/users", `{"email":`, 400, "INVALID_ARGUMENT", "unexpected EOF"},
		{"unknown field", "POST", "/v1/users", `{"nope":1}`, 400, "INVALID_ARGUMENT", `proto: (line 1:2): unknown field "nope"`},
		{"bad path parameter", "GET", "/v1/users/u_1/orders?pageSize=many", "", 400, "INVALID_ARGUMENT",
			`parsing field "page_size": strconv.ParseInt: parsing "many": invalid syntax`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, do(t, base, tt.method, tt.path, tt.body), tt.status, tt.code, tt.msg)
		})
	}
}

// captureHandler is a slog.Handler keeping "method path status" of each
// request line.
type captureHandler struct {
	mu  sync.Mutex
	got []string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "http request" {
		return nil
	}
	a := map[string]string{}
	r.Attrs(func(at slog.Attr) bool {
		a[at.Key] = at.Value.String()
		return true
	})
	if a["duration"] == "" {
		return fmt.Errorf("no duration in %v", a)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, a["method"]+" "+a["path"]+" "+a["status"])
	return nil
}

func (h *captureHandler) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}
