-- A stock reservation an order attempt is making or made, recorded before
-- the product service is called and deleted in the transaction that stores
-- the order. One left behind (a crash or a failure between reserving and
-- storing) is released by the recovery sweep once recover_time has passed.
CREATE TABLE pending_reservations (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	releasing BOOLEAN NOT NULL DEFAULT FALSE,
	create_time BIGINT NOT NULL,
	recover_time BIGINT NOT NULL
);
CREATE INDEX pending_reservations_due ON pending_reservations (recover_time);
