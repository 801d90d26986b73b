package breaker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/breaker"
)

// The state machine's tests drive the interceptors with invokers that
// return what a call would; breaker_kafka_test.go runs them over a broker.

const method = "/shop.products.v1.ProductService/GetProduct"

// invoker returns an invoker that fails with err.
func invoker(err error) grpc.UnaryInvoker {
	return func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return err }
}

func newBreaker(t *testing.T, opts ...breaker.Option) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call makes one unary call of method through b's interceptor.
func call(b *breaker.Breaker, ctx context.Context, inv grpc.UnaryInvoker) error {
	return b.UnaryClientInterceptor()(ctx, method, nil, nil, nil, inv)
}

func state(b *breaker.Breaker) breaker.State {
	return b.States()["shop.products.v1.ProductService"]
}

// details returns the ErrorInfo and RetryInfo of err.
func details(err error) (*errdetails.ErrorInfo, *errdetails.RetryInfo) {
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	return info, retry
}

func TestWhatCountsAsFailure(t *testing.T) {
	downstream := status.Error(codes.Unavailable, "x") // replaced below by a real refusal
	{
		b := newBreaker(t, breaker.WithFailures(1))
		_ = call(b, context.Background(), invoker(status.Error(codes.Unavailable, "down")))
		downstream = call(b, context.Background(), invoker(nil)) // a refusal, as a service would pass it on
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	cancelled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	for _, tc := range []struct {
		name  string
		ctx   func() context.Context
		err   error
		trips bool
	}{
		{"Unavailable", context.Background, status.Error(codes.Unavailable, "produce failed"), true},
		{"DeadlineExceeded", context.Background, status.Error(codes.DeadlineExceeded, "no reply"), true},
		{"NotFound", context.Background, status.Error(codes.NotFound, "no product"), false},
		{"InvalidArgument", context.Background, status.Error(codes.InvalidArgument, "bad id"), false},
		{"FailedPrecondition", context.Background, status.Error(codes.FailedPrecondition, "no stock"), false},
		{"Internal", context.Background, status.Error(codes.Internal, "bug"), false},
		{"caller cancelled", cancelled, status.Error(codes.Canceled, "cancelled"), false},
		{"Unavailable of a cancelled caller", cancelled, status.Error(codes.Unavailable, "closing"), false},
		{"DeadlineExceeded of a 10ms deadline", short, status.Error(codes.DeadlineExceeded, "no reply"), false},
		{"a downstream's refusal passed on", context.Background, downstream, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBreaker(t, breaker.WithFailures(3))
			for range 3 {
				if err := call(b, tc.ctx(), invoker(tc.err)); err != tc.err {
					t.Fatalf("call returned %v, want the invoker's %v", err, tc.err)
				}
			}
			if got := state(b) == breaker.StateOpen; got != tc.trips {
				t.Fatalf("after 3 calls failing %v: state %v, want open=%v", tc.err, state(b), tc.trips)
			}
		})
	}
}

func TestSuccessResetsTheCount(t *testing.T) {
	b := newBreaker(t, breaker.WithFailures(3))
	down := invoker(status.Error(codes.DeadlineExceeded, "no reply"))
	for range 2 {
		_ = call(b, context.Background(), down)
	}
	_ = call(b, context.Background(), invoker(status.Error(codes.NotFound, "answered")))
	for range 2 {
		_ = call(b, context.Background(), down)
	}
	if s := state(b); s != breaker.StateClosed {
		t.Fatalf("2 failures, an answer, 2 failures: %v, want closed", s)
	}
	_ = call(b, context.Background(), down)
	if s := state(b); s != breaker.StateOpen {
		t.Fatalf("3 failures in a row: %v, want open", s)
	}
}

func TestOpenCircuitFailsFast(t *testing.T) {
	b := newBreaker(t, breaker.WithFailures(2), breaker.WithOpenFor(3*time.Second))
	for range 2 {
		_ = call(b, context.Background(), invoker(status.Error(codes.Unavailable, "down")))
	}
	sent := false
	start := time.Now()
	err := call(b, context.Background(), func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		sent = true
		return nil
	})
	took := time.Since(start)
	if sent || status.Code(err) != codes.Unavailable {
		t.Fatalf("call on an open circuit: sent %v, err %v; want Unavailable, nothing sent", sent, err)
	}
	if took > 10*time.Millisecond {
		t.Errorf("refusal took %v", took)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "shop.products.v1.ProductService") || !strings.Contains(msg, "circuit open") {
		t.Errorf("message %q does not name the service and the open circuit", msg)
	}
	info, retry := details(err)
	if info.GetDomain() != kafkatransport.ErrorDomain || info.GetReason() != breaker.ReasonCircuitOpen || info.GetMetadata()["service"] != "shop.products.v1.ProductService" {
		t.Errorf("ErrorInfo %v, want %s/%s naming the service", info, kafkatransport.ErrorDomain, breaker.ReasonCircuitOpen)
	}
	if d := retry.GetRetryDelay().AsDuration(); d < 2*time.Second || d > 3*time.Second {
		t.Errorf("RetryInfo delay %v, want the open time left (about 3s)", d)
	}
	if r := breaker.Reason(err); r != breaker.ReasonCircuitOpen {
		t.Errorf("Reason = %q", r)
	}
	if st := b.Stats()[0]; st.ShedOpen != 1 || st.State != breaker.StateOpen {
		t.Errorf("Stats %+v, want one call shed, open", st)
	}
}

func TestHalfOpenProbes(t *testing.T) {
	const openFor = 250 * time.Millisecond
	for _, tc := range []struct {
		name  string
		probe error
		slow  bool // the probe fails only after the open time
		want  breaker.State
	}{
		{"probe answered", status.Error(codes.NotFound, "answered"), false, breaker.StateClosed},
		{"probe failed", status.Error(codes.DeadlineExceeded, "no reply"), false, breaker.StateOpen},
		{"probe failed after the open time", status.Error(codes.DeadlineExceeded, "no reply"), true, breaker.StateHalfOpen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var changes []string
			var mu sync.Mutex
			b := newBreaker(t, breaker.WithFailures(1), breaker.WithOpenFor(openFor),
				breaker.WithStateChange(func(_ string, from, to breaker.State) {
					mu.Lock()
					changes = append(changes, from.String()+">"+to.String())
					mu.Unlock()
				}))
			_ = call(b, context.Background(), invoker(status.Error(codes.Unavailable, "down")))
			time.Sleep(openFor + 20*time.Millisecond)
			if s := state(b); s != breaker.StateHalfOpen {
				t.Fatalf("after the open time: %v, want half-open", s)
			}
			// The probe runs; meanwhile other calls fail at once.
			inProbe, release := make(chan struct{}), make(chan struct{})
			probeDone := make(chan error)
			began := time.Now()
			go func() {
				probeDone <- call(b, context.Background(), func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					close(inProbe)
					<-release
					return tc.probe
				})
			}()
			<-inProbe
			err := call(b, context.Background(), invoker(nil))
			if info, _ := details(err); info.GetReason() != breaker.ReasonCircuitOpen || !strings.Contains(err.Error(), "half-open") {
				t.Fatalf("call during the probe: %v, want a half-open refusal", err)
			}
			if tc.slow {
				time.Sleep(time.Until(began.Add(openFor + 20*time.Millisecond)))
			} else if time.Since(began) >= openFor {
				t.Skipf("the probe took %v, not under the open time %v: the machine is too busy for this case", time.Since(began), openFor)
			}
			close(release)
			<-probeDone
			if s := state(b); s != tc.want {
				t.Fatalf("after the probe: %v, want %v", s, tc.want)
			}
			if tc.slow {
				// The next call is a probe at once, and its answer closes
				// the circuit.
				if err := call(b, context.Background(), invoker(nil)); err != nil {
					t.Fatalf("call after a slow failed probe: %v, want it let through as the next probe", err)
				}
				if s := state(b); s != breaker.StateClosed {
					t.Fatalf("after the next probe answered: %v, want closed", s)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"closed>open", "open>half-open", "half-open>" + tc.want.String()}
			if tc.slow {
				want[2] = "half-open>closed"
			}
			if !slices.Equal(changes, want) {
				t.Errorf("state changes %v, want %v", changes, want)
			}
		})
	}
}

func TestInFlightBound(t *testing.T) {
	b := newBreaker(t, breaker.WithMaxInFlight(2), breaker.WithFailures(1))
	release := make(chan struct{})
	var started, wg sync.WaitGroup
	for range 2 {
		started.Add(1)
		wg.Go(func() {
			_ = call(b, context.Background(), func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				started.Done()
				<-release
				return nil
			})
		})
	}
	started.Wait()
	start := time.Now()
	err := call(b, context.Background(), invoker(nil))
	took := time.Since(start)
	info, retry := details(err)
	if status.Code(err) != codes.Unavailable || info.GetReason() != breaker.ReasonOverloaded || !strings.Contains(err.Error(), "too many calls in flight") {
		t.Fatalf("third call with 2 in flight: %v, want Unavailable %s", err, breaker.ReasonOverloaded)
	}
	if retry.GetRetryDelay().AsDuration() != breaker.ShedRetryDelay || took > 10*time.Millisecond {
		t.Errorf("retry delay %v, refused in %v", retry.GetRetryDelay().AsDuration(), took)
	}
	if st := b.Stats()[0]; st.InFlight != 2 || st.ShedOverloaded != 1 || st.State != breaker.StateClosed {
		t.Errorf("Stats %+v: want 2 in flight, 1 shed, closed (shedding is no failure)", st)
	}
	close(release)
	wg.Wait()
	if err := call(b, context.Background(), invoker(nil)); err != nil {
		t.Fatalf("call once the others ended: %v", err)
	}
}

func TestStreams(t *testing.T) {
	const openFor = 100 * time.Millisecond
	b := newBreaker(t, breaker.WithFailures(1), breaker.WithMaxInFlight(1), breaker.WithOpenFor(openFor))
	ic := b.StreamClientInterceptor()
	desc := &grpc.StreamDesc{ServerStreams: true}
	opened := 0
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		opened++
		return nil, nil
	}
	// Streams hold no in-flight slot: more than the bound open.
	for range 3 {
		if _, err := ic(context.Background(), desc, nil, "/shop.products.v1.ProductService/Watch", streamer); err != nil {
			t.Fatalf("NewStream: %v", err)
		}
	}
	_ = call(b, context.Background(), invoker(status.Error(codes.Unavailable, "down")))
	_, err := ic(context.Background(), desc, nil, "/shop.products.v1.ProductService/Watch", streamer)
	if info, _ := details(err); info.GetReason() != breaker.ReasonCircuitOpen || opened != 3 {
		t.Fatalf("NewStream on an open circuit: %v (opened %d), want a refusal", err, opened)
	}
	// Half-open, streams are still refused: only unary probes find out
	// whether the service is back.
	time.Sleep(openFor + 20*time.Millisecond)
	if s := state(b); s != breaker.StateHalfOpen {
		t.Fatalf("after the open time: %v, want half-open", s)
	}
	if _, err := ic(context.Background(), desc, nil, "/shop.products.v1.ProductService/Watch", streamer); breaker.Reason(err) != breaker.ReasonCircuitOpen || opened != 3 {
		t.Fatalf("NewStream on a half-open circuit: %v (opened %d), want a refusal", err, opened)
	}
	if err := call(b, context.Background(), invoker(nil)); err != nil {
		t.Fatalf("unary probe: %v", err)
	}
	if _, err := ic(context.Background(), desc, nil, "/shop.products.v1.ProductService/Watch", streamer); err != nil || opened != 4 {
		t.Fatalf("NewStream once the probe closed the circuit: %v (opened %d)", err, opened)
	}
}

func TestHealthChecksPass(t *testing.T) {
	b := newBreaker(t, breaker.WithFailures(1))
	for range 3 {
		err := b.UnaryClientInterceptor()(context.Background(), "/grpc.health.v1.Health/Check", nil, nil, nil, invoker(status.Error(codes.Unavailable, "down")))
		if breaker.Reason(err) != "" {
			t.Fatalf("health check refused: %v", err)
		}
	}
	if len(b.States()) != 0 {
		t.Fatalf("health checks made circuits: %v", b.States())
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []breaker.Option{breaker.WithFailures(0), breaker.WithOpenFor(0), breaker.WithProbes(0),
		breaker.WithMaxInFlight(-1), breaker.WithMinDeadline(-1), breaker.WithStateChange(nil), nil} {
		if _, err := breaker.New(o); err == nil {
			t.Errorf("New(%v) accepted an invalid option", o)
		}
	}
	if _, err := breaker.New(breaker.WithMaxInFlight(0)); err != nil {
		t.Errorf("WithMaxInFlight(0), no bound: %v", err)
	}
}

func TestReasonOfOtherErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("plain"), status.Error(codes.Unavailable, "down"), status.Error(codes.NotFound, "CIRCUIT_OPEN")} {
		if r := breaker.Reason(err); r != "" {
			t.Errorf("Reason(%v) = %q", err, r)
		}
	}
}
