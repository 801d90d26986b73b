package productsvc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kgrpc/platform/internal/sqlstore"
)

// Reserve implements Repository.
func (r *SQLRepository) Reserve(ctx context.Context, id string, items []StockRequest, now time.Time, events StockEvents) (Reservation, bool, error) {
	var (
		res      Reservation
		replayed bool
	)
	err := r.write(ctx, "reserve stock", func(tx *sqlstore.Tx) error {
		// Claim the id first: a concurrent duplicate waits here (or, in
		// PostgreSQL, on the unique key) and then sees the stored one.
		n, err := sqlstore.Affected(tx.ExecContext(ctx, `INSERT INTO reservations (id, released, create_time)
			VALUES ($1, FALSE, $2) ON CONFLICT (id) DO NOTHING`, id, sqlstore.Micros(now)))
		if err != nil {
			return err
		}
		if n == 0 {
			stored, err := readReservation(ctx, tx, id)
			switch {
			case err != nil:
				return err
			case stored.Released:
				return ErrReservationReleased
			case !sameItems(stored.Items, items):
				return ErrReservationConflict
			}
			res, replayed = stored, true
			return nil
		}
		res = Reservation{ID: id, CreateTime: now, Items: make([]ReservedItem, 0, len(items))}
		changes := make([]StockChange, 0, len(items))
		for i, it := range items {
			var (
				name  string
				price int64
				stock int64
			)
			err := tx.QueryRowContext(ctx, `UPDATE products SET stock = stock - $1, update_time = $2
				WHERE id = $3 AND delete_time IS NULL AND stock >= $1
				RETURNING name, price_cents, stock`, it.Quantity, sqlstore.Micros(now), it.ProductID).Scan(&name, &price, &stock)
			if errors.Is(err, sql.ErrNoRows) {
				return itemFailure(ctx, tx, it)
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO reservation_items
				(reservation_id, position, product_id, product_name, unit_price_cents, quantity)
				VALUES ($1, $2, $3, $4, $5, $6)`, id, i, it.ProductID, name, price, it.Quantity); err != nil {
				return err
			}
			res.Items = append(res.Items, ReservedItem{ProductID: it.ProductID, ProductName: name, UnitPriceCents: price, Quantity: it.Quantity})
			changes = append(changes, StockChange{ProductID: it.ProductID, Delta: -it.Quantity, Stock: stock})
		}
		return tx.AddEvents(ctx, events.Of(StockMove{Reservation: res, Changes: changes})...)
	})
	if err != nil {
		return Reservation{}, false, err
	}
	return res, replayed, nil
}

// itemFailure returns why the conditional stock update of it matched no row.
func itemFailure(ctx context.Context, tx *sqlstore.Tx, it StockRequest) error {
	var stock int64
	err := tx.QueryRowContext(ctx, `SELECT stock FROM products WHERE id = $1 AND delete_time IS NULL`, it.ProductID).Scan(&stock)
	if errors.Is(err, sql.ErrNoRows) {
		return &ItemError{ProductID: it.ProductID, Requested: it.Quantity, Err: ErrNotFound}
	}
	if err != nil {
		return err
	}
	return &ItemError{ProductID: it.ProductID, Requested: it.Quantity, Available: stock, Err: ErrInsufficientStock}
}

// sameItems reports whether stored holds exactly the products and
// quantities of req, in order.
func sameItems(stored []ReservedItem, req []StockRequest) bool {
	if len(stored) != len(req) {
		return false
	}
	for i := range stored {
		if stored[i].ProductID != req[i].ProductID || stored[i].Quantity != req[i].Quantity {
			return false
		}
	}
	return true
}

// readReservation reads reservation id with its items, or ErrNotFound.
func readReservation(ctx context.Context, q sqlstore.Querier, id string) (Reservation, error) {
	var res Reservation
	err := sqlstore.ScanRow(q.QueryRowContext(ctx, `SELECT id, released, create_time, release_time FROM reservations WHERE id = $1`, id),
		ErrNotFound, &res.ID, &res.Released, sqlstore.MicrosInto(&res.CreateTime), sqlstore.MicrosInto(&res.ReleaseTime))
	if err != nil {
		return Reservation{}, err
	}
	rows, err := q.QueryContext(ctx, `SELECT product_id, product_name, unit_price_cents, quantity
		FROM reservation_items WHERE reservation_id = $1 ORDER BY position`, id)
	if err != nil {
		return Reservation{}, err
	}
	res.Items, err = sqlstore.ScanAll(rows, func(s sqlstore.Scanner) (ReservedItem, error) {
		var it ReservedItem
		err := s.Scan(&it.ProductID, &it.ProductName, &it.UnitPriceCents, &it.Quantity)
		return it, err
	})
	return res, err
}

// Release implements Repository.
func (r *SQLRepository) Release(ctx context.Context, id string, now time.Time, events StockEvents) (bool, error) {
	var released bool
	err := r.write(ctx, "release stock", func(tx *sqlstore.Tx) error {
		// The conditional update is the exactly-once guard.
		n, err := sqlstore.Affected(tx.ExecContext(ctx, `UPDATE reservations SET released = TRUE, release_time = $1
			WHERE id = $2 AND released = FALSE`, sqlstore.Micros(now), id))
		if err != nil {
			return err
		}
		if n == 0 {
			// Already released, or unknown: leave a release marker for the
			// latter so that a late reservation cannot leak stock.
			_, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, released, create_time, release_time)
				VALUES ($1, TRUE, $2, $2) ON CONFLICT (id) DO NOTHING`, id, sqlstore.Micros(now))
			return err
		}
		res, err := readReservation(ctx, tx, id)
		if err != nil {
			return err
		}
		move := StockMove{Reservation: res, Changes: make([]StockChange, 0, len(res.Items))}
		for _, it := range res.Items {
			var (
				stock   int64
				deleted sql.NullInt64
			)
			// Deleted products get their stock back too, so the books balance.
			err := tx.QueryRowContext(ctx, `UPDATE products SET stock = stock + $1, update_time = $2
				WHERE id = $3 RETURNING stock, delete_time`, it.Quantity, sqlstore.Micros(now), it.ProductID).Scan(&stock, &deleted)
			if err != nil {
				return fmt.Errorf("product %s: %w", it.ProductID, err)
			}
			move.Changes = append(move.Changes, StockChange{ProductID: it.ProductID, Delta: it.Quantity, Stock: stock, Deleted: deleted.Valid})
		}
		released = true
		return tx.AddEvents(ctx, events.Of(move)...)
	})
	return released && err == nil, err
}
