-- The outcomes of calls with side effects, by idempotency key: see
-- Idempotency (idempotency.go). Migrate applies it to every database.
CREATE TABLE IF NOT EXISTS idempotency_keys (
	scope TEXT NOT NULL,
	method TEXT NOT NULL,
	idem_key TEXT NOT NULL,
	fingerprint {{bytes}} NOT NULL,
	code INTEGER NOT NULL,
	body {{bytes}} NOT NULL,
	create_time BIGINT NOT NULL,
	PRIMARY KEY (scope, method, idem_key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_create_time ON idempotency_keys (create_time);
