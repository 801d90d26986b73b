package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file holds what keeps the API's edges safe: request bodies read
// under a deadline, parameters checked for UTF-8 before routing, security
// headers, and error messages of request decoding without Go internals.

// bodyDeadline makes reading a request's body fail once d has passed since
// the request came in, so a client that sends its body slowly (one byte now
// and then) cannot hold a connection beyond the request timeout. The
// decoder's error then answers 408 (see decodeError).
func bodyDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A stream's body (an import) is read as the service takes
			// it, within the stream's own bound (withTimeout).
			if r.Body != nil && r.Body != http.NoBody && !isStream(r) {
				_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// validUTF8 answers 400 INVALID_ARGUMENT, naming the part, for a request
// whose path segments or query parameters are not UTF-8 once unescaped
// (say "%ff"): protobuf strings must be UTF-8, and no handler could take
// them.
func validUTF8(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// r.URL.Path is unescaped already: split it only to name the
		// segment at fault, and parse the query only when it has escapes.
		if !utf8.ValidString(r.URL.Path) {
			for _, seg := range strings.Split(r.URL.EscapedPath(), "/") {
				if s, err := url.PathUnescape(seg); err == nil && !utf8.ValidString(s) {
					writeError(w, r, status.Errorf(codes.InvalidArgument, "path segment %q is not valid UTF-8", seg))
					return
				}
			}
		}
		if q := r.URL.RawQuery; strings.IndexByte(q, '%') < 0 && utf8.ValidString(q) {
			next.ServeHTTP(w, r)
			return
		}
		for name, vs := range r.URL.Query() {
			for _, v := range vs {
				if !utf8.ValidString(name) || !utf8.ValidString(v) {
					writeError(w, r, status.Errorf(codes.InvalidArgument, "query parameter %q is not valid UTF-8", strings.ToValidUTF8(name, "\uFFFD")))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets X-Content-Type-Options: nosniff on every response,
// and Cache-Control: no-store on the answers to authenticated requests,
// which are the caller's own data.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("Authorization") != "" {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

var (
	// protoPrefix is what protojson puts before its messages; it may
	// separate words with a non-breaking space on purpose.
	protoPrefix = regexp.MustCompile(`^proto:[\s\x{00a0}]*(\(line \d+:\d+\):[\s\x{00a0}]*)?`)
	// typeMismatch is grpc-gateway's message for a path parameter of the
	// wrong type.
	typeMismatch = regexp.MustCompile(`^type mismatch, parameter: ([\w.]+), error: `)
	// queryField is grpc-gateway's message for a query parameter that does
	// not parse.
	queryField = regexp.MustCompile(`^parsing field "([\w.]+)": `)
)

// decodeError returns the HTTP status and message of an InvalidArgument
// that grpc-gateway made while decoding a request (body, path, query), in
// words without Go internals; ok is false for other errors, which the
// services wrote and which go out as they are. A parameter's field path,
// in protobuf names in grpc-gateway's message, is named as jsonName
// (when not nil) returns it: its JSON name.
func decodeError(msg string, maxBody int64, jsonName func(path string) string) (code int, text string, ok bool) {
	if jsonName == nil {
		jsonName = func(path string) string { return path }
	}
	switch {
	case strings.Contains(msg, "http: request body too large"):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxBody), true
	case strings.Contains(msg, "i/o timeout"):
		return http.StatusRequestTimeout, "request body not received within the request timeout", true
	case strings.Contains(msg, "unexpected EOF"):
		return http.StatusBadRequest, "malformed JSON: the request body ends too early", true
	}
	if m := typeMismatch.FindStringSubmatch(msg); m != nil {
		return http.StatusBadRequest, fmt.Sprintf("invalid value for path parameter %q", jsonName(m[1])), true
	}
	if m := queryField.FindStringSubmatch(msg); m != nil {
		return http.StatusBadRequest, fmt.Sprintf("invalid value for query parameter %q", jsonName(m[1])), true
	}
	if loc := protoPrefix.FindStringIndex(msg); loc != nil {
		rest := strings.ReplaceAll(msg[loc[1]:], "\u00a0", " ")
		if strings.HasPrefix(rest, "syntax error") || strings.HasPrefix(rest, "unexpected token") {
			return http.StatusBadRequest, "malformed JSON in the request body", true
		}
		return http.StatusBadRequest, "request body: " + rest, true
	}
	if strings.HasPrefix(msg, "syntax error") || strings.Contains(msg, "invalid character") {
		return http.StatusBadRequest, "malformed JSON in the request body", true
	}
	return 0, "", false
}

// DefaultMaxHeaderBytes bounds the request line and headers of an API
// request unless Config says otherwise.
const DefaultMaxHeaderBytes = 64 << 10

// limitHeaders refuses, 431 in the JSON error format, a request whose
// target and headers together exceed n bytes. (The HTTP server's own limit,
// MaxHeaderBytes of http.Server, must lie above n, or its plain-text 431
// answers first.)
func limitHeaders(n int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			size := len(r.RequestURI)
			for k, vs := range r.Header {
				for _, v := range vs {
					size += len(k) + len(v) + 4 // ": " and CRLF
				}
			}
			if size > n {
				writeJSON(w, http.StatusRequestHeaderFieldsTooLarge, errorBody{Code: "RESOURCE_EXHAUSTED",
					Message: fmt.Sprintf("request headers larger than %d bytes", n), Details: []json.RawMessage{}})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
