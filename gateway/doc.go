// Package gateway is the shop's single REST/JSON entry point. It is a
// grpc-gateway ServeMux over the standard generated clients, which run on
// the Kafka transport; plus bearer-token verification, one error format,
// health and readiness endpoints, the OpenAPI document and one aggregate
// endpoint (the user dashboard).
//
// Errors are always JSON of the form
//
//	{"code": "FAILED_PRECONDITION", "message": "...", "details": [...]}
//
// with code the google.rpc.Code name, details the status details in protojson
// (each with its "@type"), and the HTTP status grpc-gateway maps the code to
// (InvalidArgument, FailedPrecondition and OutOfRange 400, Unauthenticated
// 401, PermissionDenied 403, NotFound 404, AlreadyExists 409,
// ResourceExhausted 429, Unavailable 503, DeadlineExceeded 504).
//
// A POST may carry an Idempotency-Key header; the gateway makes up one for
// each POST without. Services receive it as "idempotency-key" metadata, so a
// client retry with the same key, or Kafka delivering one call twice after a
// crash, does the work once (the order service creates one order).
package gateway
