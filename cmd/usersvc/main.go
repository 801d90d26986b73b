// Command usersvc serves the users service (registration, login, profiles)
// over Kafka, for deployments with one process per service. Instances
// started with the same brokers share the work as one consumer group.
//
//	usersvc --brokers kafka:9092 --unit-key keys/usersvc.key --keyring keys/keyring.json --db postgres://... (or a SQLite path)
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (--brokers, --unit-key, --keyring, --instance-id,
// --topic-prefix, --kafka-config, --log-level, --log-format; see --help),
// --token-ttl (KGRPC_TOKEN_TTL, 1h: lifetime of access tokens), and --db
// (KGRPC_DB), --http-addr (KGRPC_HTTP_ADDR, /healthz and /readyz),
// --admin-email and --admin-password (KGRPC_ADMIN_EMAIL,
// KGRPC_ADMIN_PASSWORD). SIGINT or SIGTERM drains in-flight calls and stops.
package main

import "github.com/kgrpc/platform/internal/app"

func main() { app.Main(app.Users) }
