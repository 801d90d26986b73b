// Package breakertest is the shop's fail-fast test: the deployable binaries
// as processes on the broker of KAFKA_BROKERS, or an in-process kfake
// broker when that is unset. Under a steady load of GET /v1/products/{id}
// through the gateway, productsvc is killed with SIGKILL: once the
// gateway's circuit for the product service opens, the calls answer 503
// UNAVAILABLE with Retry-After at once, and after productsvc is back they
// succeed again within seconds. Meanwhile a second gateway with a small
// --max-inflight-per-service takes five times its bound in concurrent
// requests: those beyond the bound answer 503 at once, and its memory
// stays bounded. The test prints its figures, one line each, prefixed
// "figure:"; RELIABILITY.md records them.
package breakertest
