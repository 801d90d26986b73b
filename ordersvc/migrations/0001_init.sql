CREATE TABLE orders (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
	total_cents BIGINT NOT NULL CHECK (total_cents >= 0),
	create_time BIGINT NOT NULL,
	update_time BIGINT NOT NULL
);
CREATE INDEX orders_user_newest ON orders (user_id, create_time DESC, id DESC);
CREATE TABLE order_items (
	order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
	line INTEGER NOT NULL,
	product_id TEXT NOT NULL,
	product_name TEXT NOT NULL,
	unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
	quantity INTEGER NOT NULL CHECK (quantity > 0),
	PRIMARY KEY (order_id, line)
);
CREATE TABLE IF NOT EXISTS outbox (
	id {{id}},
	event_type TEXT NOT NULL,
	payload {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL
);
