// Package gateway is the shop's single REST/JSON entry point. It is a
// grpc-gateway ServeMux over the standard generated clients, which run on
// the Kafka transport; plus bearer-token verification, one error format,
// health and readiness endpoints, the OpenAPI document and one aggregate
// endpoint (the user dashboard).
//
// [New] builds it as the grpc-gateway examples do: a ServeMux with its
// options (errors.go, idempotency.go), one Register...HandlerClient per
// service, then a chain of small func(http.Handler) http.Handler
// middlewares, each in the file of its concern, outermost first:
//
//   - withRoute (observe.go): a place in the request's context where
//     routing writes the route pattern ("/v1/products/{id}", "/healthz";
//     "unmatched" when no route matched, "unrouted" when a middleware
//     below answered before routing), for the span and the metrics; and
//     the request's X-Request-Id (the caller's, up to 128 printable ASCII
//     characters, or a new one), echoed on the response, in the log lines
//     as request_id and passed to the services as x-request-id metadata;
//   - traceHTTP (observe.go), with Config.TracerProvider: the request's
//     server span, continuing an incoming traceparent, named
//     "<METHOD> <route>", not for /healthz, /readyz and /metrics;
//   - measure (observe.go), with Config.Metrics: http_requests_total and
//     http_request_duration_seconds by route, method and status;
//   - logRequests (middleware.go): one log line per request, with its
//     trace_id, /healthz, /readyz and /openapi.json included;
//   - securityHeaders (harden.go): X-Content-Type-Options: nosniff on
//     every response, Cache-Control: no-store on the answers to requests
//     with an Authorization header;
//   - cors (cors.go): browsers of Config.CORSOrigins (none by default) get
//     CORS headers, and their preflights 204; a preflight from another
//     origin is 403;
//   - limitHeaders (harden.go): a request line and headers over
//     Config.MaxHeaderBytes (64 KiB) get 431 RESOURCE_EXHAUSTED "request
//     headers larger than 65536 bytes" (the HTTP server's own plain-text
//     431 comes only above its MaxHeaderBytes, which must be larger: 1 MiB
//     in cmd/gateway);
//   - validUTF8 (harden.go): a path segment or query parameter that is not
//     UTF-8 once unescaped ("%ff") gets 400 INVALID_ARGUMENT naming it;
//   - verifyBearer (auth.go): a request with an Authorization header that
//     is not "Bearer <token>", whose token does not verify with
//     Config.Verifier (malformed, unknown signing key, bad signature,
//     expired, not yet valid, another issuer or audience), or whose user's
//     tokens are revoked (Config.Revoked) gets 401 UNAUTHENTICATED and is
//     not forwarded. A verified request goes on without its Authorization
//     header: the user goes to the services as auth.PrincipalKey metadata,
//     never the token. One without the header goes on anonymous, since
//     some routes are public (Config.Public); of any other route it gets
//     401 UNAUTHENTICATED "authentication required: send a bearer token"
//     before its body or query is decoded (refuseAnonymous, anonymous.go),
//     and the services refuse a non-admin on an admin route (403
//     PERMISSION_DENIED);
//   - addIdempotencyKey (idempotency.go): see below;
//   - withTimeout (middleware.go): Config.RequestTimeout (10s) bounds each
//     request and its calls over Kafka; past it, 504 DEADLINE_EXCEEDED;
//   - bodyDeadline (harden.go): the body must arrive within the request
//     timeout too; a slower one gets 408 INVALID_ARGUMENT "request body not
//     received within the request timeout";
//   - limitBody (middleware.go): Config.MaxBodyBytes (1 MiB) bounds request
//     bodies; a longer one gets 413 INVALID_ARGUMENT "request body larger
//     than 1048576 bytes" and is not forwarded;
//   - rateLimitAuth (ratelimit.go): at most Config.AuthRateLimit login and
//     registration attempts a minute per client address and per email;
//     more get 429 RESOURCE_EXHAUSTED with Retry-After.
//
// GET /readyz (health.go) answers 200 {"ready": true, "checks": {...}}
// when every check is "ok", else 503 with "ready": false: "broker"
// (Config.Ping), the Config.Health checks ("revocations") and "users",
// "products" and "orders", each the health protocol's Check of the
// service's name, asked of its unit's health client (Config.UsersHealth,
// ...): "NOT_SERVING: <the reason the unit gives>", such as
// "NOT_SERVING: database: ...", or "unavailable: ..." when the unit does not
// answer within the 3s the whole check has.
//
// All but those down to cors apply to the API (the ServeMux) only.
// GET /.well-known/jwks.json serves the public keys that verify user
// tokens (a JSON Web Key Set, Content-Type application/jwk-set+json). Errors of decoding a request are said without Go internals
// (decodeError: "malformed JSON in the request body", "request body:
// unknown field ...", "invalid value for query parameter \"pageSize\"",
// "unexpected data after the JSON object in the request body": a body is
// one JSON value), and a request within MaxBodyBytes that is too large for
// the message bus is 413 RESOURCE_EXHAUSTED "request too large to send to
// the service". POST /v1/products:import decodes every line of its body
// before it sends any (import.go): a line that does not decode is 400
// "line N: ..." with a google.rpc.BadRequest field violation "line N", and
// nothing is imported.
//
// Field paths in errors are in the API's JSON names, as its bodies are:
// the services name fields by their protobuf names (a BadRequest field
// violation "items[0].product_id", the validation message listing them),
// and the error handler translates them along the request message of the
// route's RPC method ("items[0].productId"; fieldnames.go). Bodies of
// errors are not HTML-escaped ("Bearer <token>").
//
// Errors are always JSON of the form
//
//	{"code": "FAILED_PRECONDITION", "message": "...", "details": [...]}
//
// with code the google.rpc.Code name, details the status details in protojson
// (each with its "@type"), and the HTTP status grpc-gateway maps the code to
// (InvalidArgument, FailedPrecondition and OutOfRange 400, Unauthenticated
// 401, PermissionDenied 403, NotFound 404, AlreadyExists 409,
// ResourceExhausted 429, Unavailable 503, DeadlineExceeded 504). A 401 has a
// `WWW-Authenticate: Bearer realm="shop"` header. An error with a
// google.rpc.RetryInfo detail has a Retry-After header (its delay in whole
// seconds, rounded up, at least 1). A path no route takes is 404
// NOT_FOUND; a route's path with another method, 405 UNIMPLEMENTED.
//
// Failing fast: the services' clients go through a breaker
// (kafkatransport/breaker; RunGateway installs it, Config.Breaker shows
// it). After consecutive calls of one service that got no answer
// (Unavailable, DeadlineExceeded), its circuit opens and its routes answer
// 503 UNAVAILABLE at once, with an ErrorInfo detail of reason CIRCUIT_OPEN
// and Retry-After the time until the breaker probes the service again;
// beyond the bound of calls in flight to one service, 503 UNAVAILABLE
// with reason OVERLOADED and Retry-After: 1. The other services' routes
// are not affected. /readyz lists the circuits that are not closed under
// "circuits" ({"shop.products.v1.ProductService": "open"}), without
// changing readiness.
//
// A POST, PATCH or DELETE may carry an Idempotency-Key header; the gateway
// makes up one for each without. Services receive it as "idempotency-key"
// metadata and run the call once per key (kafkatransport/idempotency), so
// a client retry with the same key, or Kafka delivering one call twice
// after a crash, does the work once and answers as the first time, with an
// Idempotency-Replayed: true header; the same key with another body is 400
// FAILED_PRECONDITION. Of the request's headers, only Idempotency-Key (on
// any method) becomes call metadata, beside the verified user
// (auth.PrincipalKey), the request id (x-request-id) and the
// x-forwarded-host and x-forwarded-for entries
// grpc-gateway always adds.
package gateway
