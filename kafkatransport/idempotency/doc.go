// Package idempotency gives the methods of a gRPC service an exactly-once
// effect on top of at-least-once delivery: a server interceptor recognises a
// request it has answered before, a redelivered Kafka record or a call
// repeated with the same idempotency key, and returns the first answer
// without running the handler again.
//
// # Which methods
//
// Protobuf's standard method option idempotency_level says which methods
// are safe to run again:
//
//	rpc GetProduct(GetProductRequest) returns (GetProductResponse) {
//	  option idempotency_level = NO_SIDE_EFFECTS;
//	}
//
// Methods marked NO_SIDE_EFFECTS or IDEMPOTENT run as they are. Every other
// method is treated as having side effects, and the interceptor applies to
// it. It reads the option from the service descriptors in protoregistry
// (the generated code registers them), so a method whose service is not
// registered runs as it is too.
//
// # Keys
//
// A call's idempotency key is its "idempotency-key" metadata (at most
// MaxKeyLen bytes; longer is InvalidArgument) or, without one, the
// correlation id of its Kafka request record (kafkatransport's
// RequestFromContext), which every redelivery of the record repeats. A key
// is scoped to the caller (WithScope, for example the authenticated
// subject) and the method: the same key of another caller or method is
// another operation. The request travels with it as a fingerprint (a
// SHA-256 of the key, the method and the request's deterministic protobuf
// encoding): the same key with a different request fails with
// FailedPrecondition, "idempotency key ... was already used for a
// different request", and runs nothing.
//
// # Outcomes
//
// The first run's outcome is recorded, and the handler's writes commit with
// it: its response, or its error status when the error is a definite answer
// (InvalidArgument, NotFound, AlreadyExists, PermissionDenied,
// FailedPrecondition, OutOfRange, Unimplemented). Any other error
// (Unavailable, DeadlineExceeded, Internal, Aborted, ...) records nothing
// and its writes are rolled back, so a retry with the key runs the method
// again. A replayed answer carries the
// response header "idempotency-replayed: true"; the response headers and
// trailers the first run set are not recorded.
//
// Concurrent calls with one key take effect once. Within a process the
// handler runs once: the others wait for it and answer with its outcome.
// Across processes each may run the handler, but the store's unit of work
// decides: the one that records first commits, the others roll back their
// writes and answer with its outcome (what a handler does outside that
// transaction, such as calling another service, happens in each run, so it
// must be idempotent itself).
//
// # Exactly once
//
// The record "this key ran, with this outcome" must commit in the same
// transaction as the handler's own writes, or a crash between the two runs
// the effect twice or forgets its answer. Store is that contract: Do runs
// the handler with a context that carries a unit of work, the service's
// writes join it, and Do records the outcome in it before it commits.
// internal/sqlstore implements it for the shop's SQL databases (DB.InTx
// joins the unit).
package idempotency
