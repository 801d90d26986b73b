-- The W3C trace context of the call that wrote each outbox event, which
-- the relay publishes the event with (see internal/outbox). Services create
-- the outbox table in their first migration (outbox.Schema); creating it
-- here where none did lets the column be added in every database.
CREATE TABLE IF NOT EXISTS outbox (
	id {{id}},
	event_type TEXT NOT NULL,
	payload {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL
);
ALTER TABLE outbox ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
