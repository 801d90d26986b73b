package breaker

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Breaker fails calls fast per downstream service: when its circuit is
// open, or too many of its calls are in flight (see the package doc). Make
// one with New per client (one ClientConn), and share it between the
// client's interceptors; it is safe for concurrent use.
type Breaker struct {
	cfg config

	mu       sync.RWMutex
	services map[string]*service
}

// service is the state of one downstream service.
type service struct {
	name string
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]
	// openUntil is when the open circuit lets probes through, in Unix
	// nanoseconds; set when it opens.
	openUntil atomic.Int64
	inFlight  atomic.Int64
	shed      [2]atomic.Uint64 // by reason: circuit, overloaded
}

// shed indexes.
const (
	shedCircuit = iota
	shedOverloaded
)

// errExcluded is reported to the circuit for calls that must not count:
// cancelled, too short a deadline, refused here for overload.
var errExcluded = errors.New("breaker: not counted")

// New returns a Breaker, or an error naming an invalid option.
func New(opts ...Option) (*Breaker, error) {
	cfg := defaults()
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("breaker: nil option"))
			continue
		}
		errs = append(errs, o.apply(&cfg))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Breaker{cfg: cfg, services: map[string]*service{}}, nil
}

// service returns the state of the service named name, made on first use.
// The services a client calls are those of its generated stubs: few.
func (b *Breaker) service(name string) *service {
	b.mu.RLock()
	s := b.services[name]
	b.mu.RUnlock()
	if s != nil {
		return s
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s = b.services[name]; s != nil {
		return s
	}
	s = &service{name: name}
	failures := uint32(b.cfg.failures)
	s.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: uint32(b.cfg.probes),
		Timeout:     b.cfg.openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return err == errExcluded },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				s.openUntil.Store(time.Now().Add(b.cfg.openFor).UnixNano())
			}
			if b.cfg.onChange != nil {
				b.cfg.onChange(name, State(from), State(to))
			}
		},
	})
	b.services[name] = s
	return s
}

// serviceOf returns the service of a full method name, "/pkg.Service/Method".
func serviceOf(method string) string {
	method = strings.TrimPrefix(method, "/")
	if i := strings.LastIndexByte(method, '/'); i >= 0 {
		return method[:i]
	}
	return method
}

// bypass reports whether calls of the service pass untouched.
func bypass(service string) bool {
	return service == grpc_health_v1.Health_ServiceDesc.ServiceName
}

// UnaryClientInterceptor returns the interceptor that fails unary calls
// fast while their service's circuit is open or its in-flight bound is
// reached, and counts the outcomes of the others.
func (b *Breaker) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		name := serviceOf(method)
		if bypass(name) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		s := b.service(name)
		probe := s.cb.State() == gobreaker.StateHalfOpen
		done, err := s.cb.Allow()
		if err != nil {
			return b.refuseCircuit(s, err)
		}
		if limit := int64(b.cfg.maxInFlight); limit > 0 {
			if s.inFlight.Add(1) > limit {
				s.inFlight.Add(-1)
				done(errExcluded)
				s.shed[shedOverloaded].Add(1)
				return refusal(name, ReasonOverloaded, "too many calls in flight", ShedRetryDelay)
			}
			defer s.inFlight.Add(-1)
		}
		start := time.Now()
		err = invoker(ctx, method, req, reply, cc, opts...)
		out := b.outcome(ctx, start, err)
		if probe && out != nil && time.Since(start) >= b.cfg.openFor {
			// A probe that failed only after a whole open period: the next
			// probe goes at once, not one more open period later. Probes
			// go one at a time and at most once an open period, counted
			// from when each began, so a service that comes back while a
			// slow probe waits (as after a broker outage, while its group
			// rejoins) is found at the next call.
			out = errExcluded
		}
		done(out)
		return err
	}
}

// StreamClientInterceptor returns the interceptor that fails NewStream at
// once while the service's circuit is not closed (open, or half-open with
// unary probes finding out whether the service is back: a stream would
// wait on a dead service for its whole life). Streams are not counted, take
// no probe and hold no in-flight slot (see the package doc).
func (b *Breaker) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		name := serviceOf(method)
		if !bypass(name) {
			if s := b.service(name); s.cb.State() != gobreaker.StateClosed {
				return nil, b.refuseCircuit(s, gobreaker.ErrOpenState)
			}
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// refuseCircuit returns the refusal of a call the circuit of s did not
// allow (err is gobreaker's reason).
func (b *Breaker) refuseCircuit(s *service, err error) error {
	s.shed[shedCircuit].Add(1)
	if errors.Is(err, gobreaker.ErrTooManyRequests) {
		return refusal(s.name, ReasonCircuitOpen, "circuit half-open, probing", ShedRetryDelay)
	}
	return refusal(s.name, ReasonCircuitOpen, "circuit open", time.Until(time.Unix(0, s.openUntil.Load())))
}

// outcome returns what the circuit is told of a call that began at start
// and ended with err: nil for a success, errExcluded for a call not to
// count, else err, a failure.
func (b *Breaker) outcome(ctx context.Context, start time.Time, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return errExcluded // the caller went away
	}
	switch status.Code(err) {
	case codes.Canceled:
		return errExcluded
	case codes.DeadlineExceeded:
		if d, ok := ctx.Deadline(); ok && d.Sub(start) < b.cfg.minDeadline {
			return errExcluded
		}
		return err
	case codes.Unavailable:
		if Reason(err) != "" {
			return nil // the service answered: its own downstream is down
		}
		return err
	}
	return nil // the service answered
}

// Stats is what a Breaker knows of one service.
type Stats struct {
	// Service is the service's full name.
	Service string
	// State is its circuit's state.
	State State
	// InFlight is how many of its unary calls are in flight.
	InFlight int
	// ShedOpen counts the calls refused for its circuit (ReasonCircuitOpen),
	// ShedOverloaded those refused for its in-flight bound
	// (ReasonOverloaded).
	ShedOpen, ShedOverloaded uint64
}

// Stats returns the Stats of every service the Breaker has seen a call
// of, by name.
func (b *Breaker) Stats() []Stats {
	b.mu.RLock()
	names := slices.Sorted(maps.Keys(b.services))
	svcs := make([]*service, len(names))
	for i, n := range names {
		svcs[i] = b.services[n]
	}
	b.mu.RUnlock()
	out := make([]Stats, len(svcs))
	for i, s := range svcs {
		out[i] = Stats{Service: s.name, State: State(s.cb.State()), InFlight: int(s.inFlight.Load()),
			ShedOpen: s.shed[shedCircuit].Load(), ShedOverloaded: s.shed[shedOverloaded].Load()}
	}
	return out
}

// States returns the circuit state of every service the Breaker has seen
// a call of, by name.
func (b *Breaker) States() map[string]State {
	out := map[string]State{}
	for _, s := range b.Stats() {
		out[s.Service] = s.State
	}
	return out
}
