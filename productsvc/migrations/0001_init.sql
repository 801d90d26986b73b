CREATE TABLE products (
	id TEXT PRIMARY KEY,
	sku TEXT NOT NULL,
	sku_key TEXT NOT NULL,
	name TEXT NOT NULL,
	name_key TEXT NOT NULL,
	description TEXT NOT NULL,
	description_key TEXT NOT NULL,
	category TEXT NOT NULL,
	category_key TEXT NOT NULL,
	price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
	stock BIGINT NOT NULL CHECK (stock >= 0),
	create_time BIGINT NOT NULL,
	update_time BIGINT NOT NULL,
	delete_time BIGINT
);
CREATE UNIQUE INDEX products_live_sku_key ON products (sku_key) WHERE delete_time IS NULL;
CREATE INDEX products_name_key_id ON products (name_key, id);
CREATE INDEX products_price_id ON products (price_cents, id);
CREATE INDEX products_create_time_id ON products (create_time, id);
CREATE INDEX products_category_key ON products (category_key);
CREATE TABLE reservations (
	id TEXT PRIMARY KEY,
	released BOOLEAN NOT NULL DEFAULT FALSE,
	create_time BIGINT NOT NULL,
	release_time BIGINT
);
CREATE TABLE reservation_items (
	reservation_id TEXT NOT NULL REFERENCES reservations (id),
	position INTEGER NOT NULL,
	product_id TEXT NOT NULL REFERENCES products (id),
	product_name TEXT NOT NULL,
	unit_price_cents BIGINT NOT NULL,
	quantity BIGINT NOT NULL CHECK (quantity > 0),
	PRIMARY KEY (reservation_id, position)
);
CREATE TABLE IF NOT EXISTS outbox (
	id {{id}},
	event_type TEXT NOT NULL,
	payload {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL
);
