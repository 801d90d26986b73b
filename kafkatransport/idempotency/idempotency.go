package idempotency

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/kgrpc/platform/kafkatransport"
)

// MetadataKey is the call metadata key of an idempotency key. grpc-gateway
// passes it on from the HTTP header Idempotency-Key when the gateway's
// header matcher says so.
const MetadataKey = "idempotency-key"

// MaxKeyLen bounds an idempotency key, in bytes.
const MaxKeyLen = 200

// ReplayedHeader is the response header, set to "true", of an answer that
// was recorded by an earlier run.
const ReplayedHeader = "idempotency-replayed"

// Key names one operation: who called (Scope), which method (Method, the
// full name "/pkg.Service/Method") and the caller's idempotency key.
type Key struct {
	Scope, Method, Key string
}

// Outcome is the recorded answer of an operation.
type Outcome struct {
	// Fingerprint identifies the request that ran under the key.
	Fingerprint []byte
	// Code is the answer's status code.
	Code codes.Code
	// Body is the response message when Code is OK, else the status as a
	// google.rpc.Status, both in protobuf binary encoding.
	Body []byte
}

// ErrConflict is what Store.Do returns when another run recorded the key
// first; it rolled back fn's writes.
var ErrConflict = errors.New("idempotency: key recorded by another run")

// Store keeps outcomes, and runs a method with its writes in a unit of work
// so that the outcome is recorded atomically with them.
type Store interface {
	// Lookup returns the outcome recorded under k, if any.
	Lookup(ctx context.Context, k Key) (out Outcome, found bool, err error)
	// Do calls fn with a context that carries a fresh unit of work, which
	// the service's writes made with that context join. When fn returns
	// record true, Do records the outcome under k in the unit and commits
	// it; when k is recorded already, it rolls back and returns
	// ErrConflict. When fn returns record false, Do rolls the unit back.
	Do(ctx context.Context, k Key, fn func(ctx context.Context) (out Outcome, record bool)) error
}

// Option configures UnaryServerInterceptor.
type Option func(*interceptor)

// WithScope sets the function that names the caller of a call, so that
// keys of different callers never meet; by default every caller shares one
// scope.
func WithScope(scope func(ctx context.Context) string) Option {
	return func(i *interceptor) { i.scope = scope }
}

// WithFingerprintKey makes request fingerprints HMAC-SHA256 under key
// instead of plain SHA-256, so that the stored fingerprint of a request
// carrying a secret (a password) cannot be checked against guesses by
// whoever reads the store. Every instance of a service must use the same
// key.
func WithFingerprintKey(key []byte) Option {
	return func(i *interceptor) { i.fpKey = bytes.Clone(key) }
}

// WithLogger sets the logger of store failures; slog.Default() otherwise.
func WithLogger(l *slog.Logger) Option {
	return func(i *interceptor) { i.logger = l }
}

type interceptor struct {
	fpKey   []byte // HMAC key of fingerprints; nil for SHA-256
	store   Store
	scope   func(context.Context) string
	logger  *slog.Logger
	methods methods
	flights flights
}

// UnaryServerInterceptor returns the interceptor that runs each method with
// side effects once per key, keeping outcomes in store. Install it inside
// (after) the interceptor that authenticates callers when WithScope reads
// their identity.
func UnaryServerInterceptor(store Store, opts ...Option) grpc.UnaryServerInterceptor {
	i := &interceptor{
		store:   store,
		scope:   func(context.Context) string { return "" },
		logger:  slog.Default(),
		flights: flights{m: map[Key]chan struct{}{}},
	}
	for _, o := range opts {
		o(i)
	}
	return i.intercept
}

func (i *interceptor) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	m := i.methods.get(info.FullMethod)
	msg, isProto := req.(proto.Message)
	if !m.sideEffects || !isProto {
		return handler(ctx, req)
	}
	key, err := keyOf(ctx)
	if err != nil {
		return nil, err
	}
	if key == "" { // not a Kafka request, and no key: nothing to recognise
		return handler(ctx, req)
	}
	k := Key{Scope: i.scope(ctx), Method: info.FullMethod, Key: key}
	fp, err := fingerprint(i.fpKey, k, msg)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "request of %s does not encode: %v", info.FullMethod, err)
	}
	release, err := i.flights.acquire(ctx, k)
	if err != nil {
		return nil, err
	}
	defer release()

	if out, found, err := i.store.Lookup(ctx, k); err != nil {
		return nil, i.storeFailed(ctx, "look up", k, err)
	} else if found {
		return i.replay(ctx, m, k, out, fp)
	}
	var (
		resp any
		herr error
	)
	err = i.store.Do(ctx, k, func(uctx context.Context) (Outcome, bool) {
		resp, herr = handler(uctx, req)
		out, record, oerr := outcomeOf(fp, resp, herr)
		if oerr != nil {
			resp, herr = nil, status.Errorf(codes.Internal, "response of %s does not encode: %v", info.FullMethod, oerr)
		}
		return out, record
	})
	if errors.Is(err, ErrConflict) {
		out, found, lerr := i.store.Lookup(ctx, k)
		if lerr != nil || !found {
			return nil, i.storeFailed(ctx, "look up after a conflict", k, errors.Join(err, lerr))
		}
		return i.replay(ctx, m, k, out, fp)
	}
	if err != nil {
		return nil, i.storeFailed(ctx, "record", k, err)
	}
	return resp, herr
}

// KeyFromContext returns the idempotency key of an incoming call's
// metadata (MetadataKey), or "" when it has none; a key longer than
// MaxKeyLen is an InvalidArgument error.
func KeyFromContext(ctx context.Context) (string, error) {
	vs := metadata.ValueFromIncomingContext(ctx, MetadataKey)
	if len(vs) == 0 || vs[0] == "" {
		return "", nil
	}
	if len(vs[0]) > MaxKeyLen {
		return "", status.Errorf(codes.InvalidArgument, "idempotency key longer than %d bytes", MaxKeyLen)
	}
	return vs[0], nil
}

// keyOf returns the call's idempotency key: its metadata, else the id of
// its request record, else "".
func keyOf(ctx context.Context) (string, error) {
	if k, err := KeyFromContext(ctx); k != "" || err != nil {
		return k, err
	}
	if r, ok := kafkatransport.RequestFromContext(ctx); ok && r.ID != "" {
		if len(r.ID) > MaxKeyLen-len("rpc:") { // any client may write the id: bound it
			sum := sha256.Sum256([]byte(r.ID))
			return "rpc:sha256:" + hex.EncodeToString(sum[:]), nil
		}
		return "rpc:" + r.ID, nil
	}
	return "", nil
}

// fingerprint identifies the request of k: its SHA-256, or its
// HMAC-SHA256 under key when there is one.
func fingerprint(key []byte, k Key, req proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if key != nil {
		h = hmac.New(sha256.New, key)
	}
	fmt.Fprintf(h, "%d:%s%d:%s", len(k.Key), k.Key, len(k.Method), k.Method)
	h.Write(b)
	return h.Sum(nil), nil
}

// recorded is whether an error with code c is a definite answer, recorded
// as the outcome; other codes leave the key free for a retry.
func recorded(c codes.Code) bool {
	switch c {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		return true
	}
	return false
}

// outcomeOf is the outcome to record of a handler's answer, and whether to
// record it.
func outcomeOf(fp []byte, resp any, herr error) (Outcome, bool, error) {
	if herr != nil {
		st := status.Convert(herr)
		if !recorded(st.Code()) {
			return Outcome{}, false, nil
		}
		body, err := proto.Marshal(st.Proto())
		return Outcome{Fingerprint: fp, Code: st.Code(), Body: body}, err == nil, err
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		return Outcome{}, false, fmt.Errorf("response %T is not a proto.Message", resp)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	return Outcome{Fingerprint: fp, Code: codes.OK, Body: body}, err == nil, err
}

// replay answers with a recorded outcome, if it is the same request's.
func (i *interceptor) replay(ctx context.Context, m method, k Key, out Outcome, fp []byte) (any, error) {
	if !bytes.Equal(out.Fingerprint, fp) {
		return nil, status.Errorf(codes.FailedPrecondition, "idempotency key %q was already used for a different request to %s", k.Key, k.Method)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(ReplayedHeader, "true"))
	if out.Code != codes.OK {
		st := &spb.Status{}
		if err := proto.Unmarshal(out.Body, st); err != nil {
			return nil, i.storeFailed(ctx, "decode the recorded status", k, err)
		}
		return nil, status.FromProto(st).Err()
	}
	resp := m.output.New().Interface()
	if err := proto.Unmarshal(out.Body, resp); err != nil {
		return nil, i.storeFailed(ctx, "decode the recorded response", k, err)
	}
	return resp, nil
}

// storeFailed logs a failure of the store and returns the caller's error:
// Unavailable, since the operation did not run (or was rolled back) and a
// retry with the key is safe.
func (i *interceptor) storeFailed(ctx context.Context, op string, k Key, err error) error {
	i.logger.ErrorContext(ctx, "idempotency: "+op, "method", k.Method, "err", err)
	return status.Error(codes.Unavailable, "the outcome of this call could not be checked or recorded; retry with the same idempotency key")
}
