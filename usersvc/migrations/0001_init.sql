CREATE TABLE users (
	id TEXT PRIMARY KEY,
	email TEXT NOT NULL,
	email_normalized TEXT NOT NULL UNIQUE,
	display_name TEXT NOT NULL,
	role TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
	password_hash TEXT NOT NULL,
	create_time BIGINT NOT NULL,
	update_time BIGINT NOT NULL
);
CREATE INDEX users_create_time_id ON users (create_time, id);
CREATE TABLE IF NOT EXISTS outbox (
	id {{id}},
	event_type TEXT NOT NULL,
	payload {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL
);
