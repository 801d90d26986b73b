package breaker

import (
	"fmt"
	"time"
)

// Defaults of the options.
const (
	// DefaultFailures is WithFailures's default.
	DefaultFailures = 5
	// DefaultOpenFor is WithOpenFor's default.
	DefaultOpenFor = 5 * time.Second
	// DefaultProbes is WithProbes's default.
	DefaultProbes = 1
	// DefaultMaxInFlight is WithMaxInFlight's default.
	DefaultMaxInFlight = 1024
	// DefaultMinDeadline is WithMinDeadline's default.
	DefaultMinDeadline = 100 * time.Millisecond
	// ShedRetryDelay is the retry delay of a call refused for too many
	// calls in flight, or while the half-open circuit's probes run.
	ShedRetryDelay = time.Second
)

// Option configures a Breaker (New).
type Option interface {
	apply(*config) error
}

type option func(*config) error

func (o option) apply(c *config) error { return o(c) }

// config is a Breaker's settings.
type config struct {
	failures    int
	openFor     time.Duration
	probes      int
	maxInFlight int
	minDeadline time.Duration
	onChange    func(service string, from, to State)
}

func defaults() config {
	return config{failures: DefaultFailures, openFor: DefaultOpenFor, probes: DefaultProbes,
		maxInFlight: DefaultMaxInFlight, minDeadline: DefaultMinDeadline}
}

func invalid(option string, value any, want string) error {
	return fmt.Errorf("breaker: %s(%v): want %s", option, value, want)
}

// WithFailures sets how many consecutive failures of the transport's kind
// (see the package doc) open a service's circuit. At least 1. Default:
// DefaultFailures.
func WithFailures(n int) Option {
	return option(func(c *config) error {
		if n < 1 {
			return invalid("WithFailures", n, "at least 1")
		}
		c.failures = n
		return nil
	})
}

// WithOpenFor sets how long an open circuit fails every call before it
// lets probes through (half-open). Above zero. Default: DefaultOpenFor.
func WithOpenFor(d time.Duration) Option {
	return option(func(c *config) error {
		if d <= 0 {
			return invalid("WithOpenFor", d, "above zero")
		}
		c.openFor = d
		return nil
	})
}

// WithProbes sets how many calls a half-open circuit lets through at once,
// and how many successes in a row close it; the others fail at once
// meanwhile. At least 1. Default: DefaultProbes.
func WithProbes(n int) Option {
	return option(func(c *config) error {
		if n < 1 {
			return invalid("WithProbes", n, "at least 1")
		}
		c.probes = n
		return nil
	})
}

// WithMaxInFlight bounds the unary calls to one service that may wait for
// their answers at once; more fail at once with ReasonOverloaded. At least
// 1, or 0 for no bound. Default: DefaultMaxInFlight.
func WithMaxInFlight(n int) Option {
	return option(func(c *config) error {
		if n < 0 {
			return invalid("WithMaxInFlight", n, "at least 1, or 0 for no bound")
		}
		c.maxInFlight = n
		return nil
	})
}

// WithMinDeadline sets the shortest time to run a call must be given (its
// deadline less its start) for a DeadlineExceeded to count as the
// service's failure; a call given less that runs out of time is not
// counted. Zero counts every DeadlineExceeded. Default: DefaultMinDeadline.
func WithMinDeadline(d time.Duration) Option {
	return option(func(c *config) error {
		if d < 0 {
			return invalid("WithMinDeadline", d, "zero or more")
		}
		c.minDeadline = d
		return nil
	})
}

// WithStateChange calls f whenever a service's circuit changes state, say
// to log it. f runs while the circuit is locked: it must be quick and must
// not call the Breaker. Default: none.
func WithStateChange(f func(service string, from, to State)) Option {
	return option(func(c *config) error {
		if f == nil {
			return invalid("WithStateChange", "nil", "a function")
		}
		c.onChange = f
		return nil
	})
}
