package ordersvc

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/kgrpc/platform/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the orders store, the outbox
// table included.
func Migrations() fs.FS { return sqlstore.Dir(migrationFiles, "migrations") }

// SQLRepository is a Repository in a SQLite file or a PostgreSQL database:
// one SQL text for both ($n placeholders, portable constructs). Its DB and
// Close come from the embedded sqlstore.Store.
type SQLRepository struct{ sqlstore.Store }

// Open opens the orders database of dsn, a PostgreSQL URL or a SQLite file
// path (created when missing; see sqlstore.Open), and applies its migrations.
func Open(ctx context.Context, dsn string) (*SQLRepository, error) {
	return sqlstore.OpenRepository[SQLRepository](ctx, "ordersvc", dsn, Migrations())
}

// Create implements Repository.
func (r *SQLRepository) Create(ctx context.Context, o Order, events OrderEvents) error {
	err := r.SQL().InTx(ctx, func(tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			o.ID, o.UserID, string(o.Status), o.TotalCents, sqlstore.Micros(o.CreateTime), sqlstore.Micros(o.UpdateTime))
		if sqlstore.IsUniqueViolation(err, "orders", "id") {
			return ErrAlreadyExists
		}
		if err != nil {
			return err
		}
		for i, it := range o.Items {
			_, err = tx.ExecContext(ctx, `INSERT INTO order_items
				(order_id, line, product_id, product_name, unit_price_cents, quantity)
				VALUES ($1, $2, $3, $4, $5, $6)`,
				o.ID, i, it.ProductID, it.ProductName, it.UnitPriceCents, it.Quantity)
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		if err := tx.AddEvents(ctx, events.Of(o)...); err != nil {
			return err
		}
		n, err := sqlstore.Affected(tx.ExecContext(ctx, `DELETE FROM pending_reservations WHERE id = $1 AND releasing = FALSE`, o.ID))
		if err != nil {
			return fmt.Errorf("delete pending reservation: %w", err)
		}
		if n == 0 {
			return ErrRecovering
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ordersvc: create order: %w", err)
	}
	return nil
}

// BeginReservation implements Repository.
func (r *SQLRepository) BeginReservation(ctx context.Context, id, userID string, now, recoverAt time.Time) error {
	// One statement: insert, or move the recover time of a record that is
	// not being released. No row touched means the sweep owns it.
	n, err := sqlstore.Affected(r.SQL().ExecContext(ctx, `INSERT INTO pending_reservations (id, user_id, releasing, create_time, recover_time)
		VALUES ($1, $2, FALSE, $3, $4)
		ON CONFLICT (id) DO UPDATE SET recover_time = excluded.recover_time
		WHERE pending_reservations.releasing = FALSE`, id, userID, sqlstore.Micros(now), sqlstore.Micros(recoverAt)))
	if err != nil {
		return fmt.Errorf("ordersvc: begin reservation: %w", err)
	}
	if n == 0 {
		return ErrRecovering
	}
	return nil
}

// DueReservations implements Repository.
func (r *SQLRepository) DueReservations(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := r.SQL().QueryContext(ctx, `SELECT id FROM pending_reservations
		WHERE recover_time < $1 ORDER BY recover_time, id LIMIT $2`, sqlstore.Micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("ordersvc: due reservations: %w", err)
	}
	ids, err := sqlstore.ScanAll(rows, func(s sqlstore.Scanner) (id string, err error) {
		return id, s.Scan(&id)
	})
	if err != nil {
		return nil, fmt.Errorf("ordersvc: due reservations: %w", err)
	}
	return ids, nil
}

// ClaimRecovery implements Repository.
func (r *SQLRepository) ClaimRecovery(ctx context.Context, id string, now, leaseUntil time.Time) (Claim, error) {
	c := ClaimLost
	err := r.SQL().InTx(ctx, func(tx *sqlstore.Tx) error {
		n, err := sqlstore.Affected(tx.ExecContext(ctx, `UPDATE pending_reservations SET releasing = TRUE, recover_time = $1
			WHERE id = $2 AND recover_time < $3`, sqlstore.Micros(leaseUntil), id, sqlstore.Micros(now)))
		if err != nil || n == 0 {
			return err // n == 0: not due, or gone: ClaimLost
		}
		var stored int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE id = $1`, id).Scan(&stored); err != nil {
			return err
		}
		if stored == 0 {
			c = ClaimRelease
			return nil
		}
		c = ClaimOrderStored
		_, err = tx.ExecContext(ctx, `DELETE FROM pending_reservations WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return ClaimLost, fmt.Errorf("ordersvc: claim recovery: %w", err)
	}
	return c, nil
}

// FinishRecovery implements Repository.
func (r *SQLRepository) FinishRecovery(ctx context.Context, id string) error {
	if _, err := r.SQL().ExecContext(ctx, `DELETE FROM pending_reservations WHERE id = $1 AND releasing = TRUE`, id); err != nil {
		return fmt.Errorf("ordersvc: finish recovery: %w", err)
	}
	return nil
}

// Get implements Repository.
func (r *SQLRepository) Get(ctx context.Context, id string) (Order, error) {
	o, err := get(ctx, r.SQL(), id)
	if err != nil {
		return Order{}, fmt.Errorf("ordersvc: get order: %w", err)
	}
	return o, nil
}

// get reads one order with its items; sql.ErrNoRows becomes ErrNotFound.
func get(ctx context.Context, q sqlstore.Querier, id string) (Order, error) {
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id))
	if err != nil {
		return Order{}, err
	}
	orders := []Order{o}
	if err := loadItems(ctx, q, orders); err != nil {
		return Order{}, err
	}
	return orders[0], nil
}

// ListByUser implements Repository.
func (r *SQLRepository) ListByUser(ctx context.Context, userID string, after *Cursor, limit int) ([]Order, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if after == nil {
		rows, err = r.SQL().QueryContext(ctx, `SELECT `+orderColumns+` FROM orders
			WHERE user_id = $1
			ORDER BY create_time DESC, id DESC LIMIT $2`, userID, limit)
	} else {
		// (create_time, id) < ($2, $3), spelled out for planners that do not
		// use an index for row-value comparisons.
		rows, err = r.SQL().QueryContext(ctx, `SELECT `+orderColumns+` FROM orders
			WHERE user_id = $1 AND (create_time < $2 OR (create_time = $2 AND id < $3))
			ORDER BY create_time DESC, id DESC LIMIT $4`,
			userID, sqlstore.Micros(after.CreateTime), after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("ordersvc: list orders: %w", err)
	}
	orders, err := sqlstore.ScanAll(rows, scanOrder)
	if err != nil {
		return nil, fmt.Errorf("ordersvc: list orders: %w", err)
	}
	if err := loadItems(ctx, r.SQL(), orders); err != nil {
		return nil, fmt.Errorf("ordersvc: list orders: %w", err)
	}
	return orders, nil
}

// CountByUser implements Repository.
func (r *SQLRepository) CountByUser(ctx context.Context, userID string) (int, error) {
	var n int
	if err := r.SQL().QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("ordersvc: count orders: %w", err)
	}
	return n, nil
}

// UpdateStatus implements Repository.
func (r *SQLRepository) UpdateStatus(ctx context.Context, id string, from, to Status, at time.Time, events OrderEvents) (Order, error) {
	var o Order
	err := r.SQL().InTx(ctx, func(tx *sqlstore.Tx) error {
		n, err := sqlstore.Affected(tx.ExecContext(ctx, `UPDATE orders SET status = $1, update_time = $2 WHERE id = $3 AND status = $4`,
			string(to), sqlstore.Micros(at), id, string(from)))
		if err != nil {
			return err
		}
		if n == 0 {
			var exists int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE id = $1`, id).Scan(&exists); err != nil {
				return err
			}
			if exists == 0 {
				return ErrNotFound
			}
			return ErrStatusConflict
		}
		if o, err = get(ctx, tx, id); err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(o)...)
	})
	if err != nil {
		return Order{}, fmt.Errorf("ordersvc: update order status: %w", err)
	}
	return o, nil
}

// loadItems fills in the items of orders with one query.
func loadItems(ctx context.Context, q sqlstore.Querier, orders []Order) error {
	if len(orders) == 0 {
		return nil
	}
	byID := make(map[string]*Order, len(orders))
	var ph strings.Builder
	args := make([]any, len(orders))
	for i := range orders {
		byID[orders[i].ID] = &orders[i]
		if i > 0 {
			ph.WriteString(", ")
		}
		ph.WriteString("$" + strconv.Itoa(i+1))
		args[i] = orders[i].ID
	}
	rows, err := q.QueryContext(ctx, `SELECT order_id, product_id, product_name, unit_price_cents, quantity
		FROM order_items WHERE order_id IN (`+ph.String()+`) ORDER BY order_id, line`, args...)
	if err != nil {
		return fmt.Errorf("read items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			orderID string
			it      Item
		)
		if err := rows.Scan(&orderID, &it.ProductID, &it.ProductName, &it.UnitPriceCents, &it.Quantity); err != nil {
			return fmt.Errorf("read items: %w", err)
		}
		if o := byID[orderID]; o != nil {
			o.Items = append(o.Items, it)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read items: %w", err)
	}
	return nil
}

// orderColumns are the columns of a row that scanOrder reads.
const orderColumns = `id, user_id, status, total_cents, create_time, update_time`

// scanOrder reads one row of orderColumns; sql.ErrNoRows becomes
// ErrNotFound.
func scanOrder(s sqlstore.Scanner) (Order, error) {
	var o Order
	err := sqlstore.ScanRow(s, ErrNotFound, &o.ID, &o.UserID, (*string)(&o.Status), &o.TotalCents,
		sqlstore.MicrosInto(&o.CreateTime), sqlstore.MicrosInto(&o.UpdateTime))
	if err != nil {
		return Order{}, err
	}
	return o, nil
}
