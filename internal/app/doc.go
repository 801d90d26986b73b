// Package app wires the shop's services, the gateway and the embedded broker
// into runnable units. The binaries in cmd/ are thin: each is a Unit (its
// name, its rows of the one flag table in settings.go, and its Run), and its
// main is app.Main(app.Gateway) and so on; cmd/platform picks its own rows
// of the same table. Each Run function blocks until its context ends and
// then shuts its unit down gracefully: in-flight calls drain, outbox events
// keep their place, databases close.
//
// The files: settings.go is the one flag table (Settings, Shared) and the
// checks that turn it into Common; units.go the binaries (Unit, Main and
// the four deployables); services.go the three service units on one
// skeleton (runService: store, outbox relay, transport server, errgroup);
// gateway.go the gateway unit; health.go readiness and /healthz, /readyz;
// healthcheck.go each service unit's grpc.health.v1.Health, served over
// Kafka on the unit's own topic (kafkatransport.HealthSpec) from live
// checks: SELECT 1 on its database within DBCheckTimeout (1s), and the
// Health of its transport server and subscribers. It answers NOT_SERVING,
// with the failures in the trailer kafkatransport.HealthReasonKey, while one
// fails; the unit's /readyz runs the same checks, and the gateway's /readyz
// asks each unit's health service.
package app
