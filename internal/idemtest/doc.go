// Package idemtest tests kafkatransport/idempotency with the shop's SQL
// idempotency store (internal/sqlstore) on SQLite and PostgreSQL, and the
// retry interceptor with the shop's methods. They live here, in the shop's
// module, so that the transport's module does not depend on pgx or SQLite.
package idemtest
