// Package breaker fails calls fast when a downstream service is failing or
// saturated, instead of letting each one wait out its deadline.
//
// A Breaker keeps, per downstream service (the gRPC service of the call's
// full method: "/shop.products.v1.ProductService/GetProduct" is
// "shop.products.v1.ProductService"), two things:
//
//   - A circuit breaker (github.com/sony/gobreaker/v2). It opens after
//     WithFailures consecutive failures of the transport's kind: calls that
//     end Unavailable (no answer could be sent or received) or
//     DeadlineExceeded (no answer in time). While open, for WithOpenFor,
//     calls fail at once. Then it is half-open: WithProbes calls go through
//     as probes, and as many successes in a row close it, while one failure
//     opens it again, unless the probe had waited WithOpenFor or longer
//     before it failed: then the circuit stays half-open and the next call
//     is a probe at once (probes go at most once an open period, counted
//     from when each began, and a service that came back during a slow
//     probe is found at the next call, not an open period later). While
//     the service stays down with calls whose deadline exceeds WithOpenFor,
//     the circuit therefore stays half-open, one probe at a time. Every answer of the service counts as a success,
//     business errors included (NotFound, InvalidArgument,
//     FailedPrecondition, Internal, ...): the service is there. Not counted
//     at all: calls the caller cancelled, calls that fail DeadlineExceeded
//     having been given less than WithMinDeadline (the caller's short
//     deadline decided, not the service), and refusals of this package that
//     a service passes on from its own downstream (an Unavailable whose
//     ErrorInfo has reason ReasonCircuitOpen or ReasonOverloaded): that
//     service answered; what it depends on did not.
//   - A bound on calls in flight (WithMaxInFlight). A call beyond it fails at
//     once rather than waiting in a queue without bound behind calls that
//     already wait for a slow service.
//
// Both refusals are status errors with code Unavailable, a message that
// names the service and why ("circuit open", "too many calls in flight"),
// and two details: a google.rpc.ErrorInfo (domain
// kafkatransport.ErrorDomain, reason ReasonCircuitOpen or ReasonOverloaded,
// metadata "service") so that callers tell them apart from other
// failures, and a google.rpc.RetryInfo whose retry_delay is when to try
// again: the time left until the circuit lets a probe through, or
// ShedRetryDelay. The gateway turns the latter into Retry-After. A refused
// call sends nothing to Kafka.
//
// Install the interceptors on a client:
//
//	b, err := breaker.New(breaker.WithMaxInFlight(512))
//	conn, err := kafkatransport.Dial(ctx, brokers,
//		kafkatransport.WithUnaryClientInterceptors(b.UnaryClientInterceptor()),
//		kafkatransport.WithStreamClientInterceptors(b.StreamClientInterceptor()))
//
// Put the unary interceptor outside one that retries Unavailable calls
// (earlier in WithUnaryClientInterceptors): a call then counts once, after
// its retries, holds its in-flight slot while it retries, and an open
// circuit fails it at once rather than after the retries' waits.
//
// Streams: NewStream fails at once while the circuit is open or half-open
// (a stream to a dead service would wait for its whole life; unary probes
// find the service back), and otherwise opens the stream; a stream neither counts toward the circuit (a watch
// that lasts an hour and ends DeadlineExceeded says nothing of the
// service's health), nor takes a half-open probe, nor holds an in-flight
// slot (long streams would take the unary calls' slots; servers bound
// their streams themselves, see kafkatransport.WithMaxStreams).
//
// Calls of the standard health service, grpc.health.v1.Health, pass
// untouched: a health check must see the unit as it is, and its calls,
// routed to each unit's own topic, would share one circuit for every unit.
//
// States and Stats report every service the Breaker has seen, for
// readiness pages and metrics (kafkatransport/kafkaprom.NewCircuits).
package breaker
