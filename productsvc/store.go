package productsvc

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the products store, the outbox
// table included.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// SQLRepository is a Repository in a SQLite file or a PostgreSQL database:
// one SQL text for both ($n placeholders, portable constructs).
type SQLRepository struct {
	db *sqlstore.DB
}

var _ Repository = (*SQLRepository)(nil)

// Open opens the products database of dsn, a PostgreSQL URL or a SQLite file
// path (created when missing; see sqlstore.Open), and applies its migrations.
func Open(ctx context.Context, dsn string) (*SQLRepository, error) {
	db, err := sqlstore.Open(ctx, dsn, Migrations())
	if err != nil {
		return nil, fmt.Errorf("productsvc: %w", err)
	}
	return &SQLRepository{db: db}, nil
}

// DB returns the underlying database, for the outbox relay.
func (r *SQLRepository) DB() *sql.DB { return r.db.DB }

// Close closes the database.
func (r *SQLRepository) Close() error { return r.db.Close() }

const productColumns = `id, sku, name, description, category, price_cents, stock, create_time, update_time`

// inTx runs fn in a write transaction and commits it when fn succeeds.
func (r *SQLRepository) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	return r.inLockedTx(ctx, op, "", fn)
}

// inLockedTx is inTx holding sqlstore lock (see sqlstore.InTx) when not empty.
func (r *SQLRepository) inLockedTx(ctx context.Context, op, lock string, fn func(tx *sql.Tx) error) error {
	var fnErr error
	err := sqlstore.InTx(ctx, r.db, lock, func(tx *sql.Tx) error {
		fnErr = fn(tx)
		return fnErr
	})
	if err != nil && fnErr == nil {
		return fmt.Errorf("productsvc: %s: %w", op, err)
	}
	return err
}

// addEvents adds evs to the outbox within tx.
func addEvents(ctx context.Context, tx *sql.Tx, evs []proto.Message) error {
	for _, ev := range evs {
		if err := outbox.Add(ctx, tx, ev); err != nil {
			return err
		}
	}
	return nil
}

func insertProduct(ctx context.Context, tx *sql.Tx, p Product) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO products (
		id, sku, sku_key, name, name_key, description, description_key, category, category_key,
		price_cents, stock, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		p.ID, p.SKU, foldCase(p.SKU), p.Name, foldCase(p.Name), p.Description, foldCase(p.Description),
		p.Category, foldCase(p.Category), p.PriceCents, p.Stock, toMicros(p.CreateTime), toMicros(p.UpdateTime))
	if sqlstore.IsUniqueViolation(err, "products", "sku_key") {
		return ErrSKUTaken
	}
	return err
}

// CreateProduct implements Repository.
func (r *SQLRepository) CreateProduct(ctx context.Context, p Product, events ProductEvents) error {
	return r.inTx(ctx, "create product", func(tx *sql.Tx) error {
		if err := insertProduct(ctx, tx, p); err != nil {
			if errors.Is(err, ErrSKUTaken) {
				return err
			}
			return fmt.Errorf("productsvc: create product: %w", err)
		}
		if events != nil {
			if err := addEvents(ctx, tx, events(p)); err != nil {
				return fmt.Errorf("productsvc: create product: %w", err)
			}
		}
		return nil
	})
}

// GetProduct implements Repository.
func (r *SQLRepository) GetProduct(ctx context.Context, id string) (Product, error) {
	p, err := scanProduct(r.db.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products
		WHERE id = $1 AND delete_time IS NULL`, id))
	if err != nil {
		return Product{}, fmt.Errorf("productsvc: get product: %w", err)
	}
	return p, nil
}

// ListProducts implements Repository.
func (r *SQLRepository) ListProducts(ctx context.Context, q ListQuery) ([]Product, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("productsvc: list products: limit %d is not positive", q.Limit)
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where := []string{"delete_time IS NULL"}
	if q.Text != "" {
		p := arg("%" + escapeLike(foldCase(q.Text)) + "%")
		where = append(where, fmt.Sprintf(`(name_key LIKE %s ESCAPE '\' OR description_key LIKE %s ESCAPE '\')`, p, p))
	}
	if q.Category != "" {
		where = append(where, "category_key = "+arg(foldCase(q.Category)))
	}
	if q.MinPriceCents != nil {
		where = append(where, "price_cents >= "+arg(*q.MinPriceCents))
	}
	if q.MaxPriceCents != nil {
		where = append(where, "price_cents <= "+arg(*q.MaxPriceCents))
	}
	if q.InStock {
		where = append(where, "stock > 0")
	}
	var col string
	switch q.Sort {
	case SortName:
		col = "name_key"
	case SortPrice:
		col = "price_cents"
	case SortCreateTime:
		col = "create_time"
	default:
		return nil, fmt.Errorf("productsvc: list products: unknown sort field %d", q.Sort)
	}
	op, dir := ">", "ASC"
	if q.Desc {
		op, dir = "<", "DESC"
	}
	if q.After != nil {
		var key any
		switch q.Sort {
		case SortName:
			key = foldCase(q.After.Name)
		case SortPrice:
			key = q.After.PriceCents
		case SortCreateTime:
			key = toMicros(q.After.CreateTime)
		}
		k, id := arg(key), arg(q.After.ID)
		// (col, id) op (k, id), spelled out for planners that do not use an
		// index for row-value comparisons.
		where = append(where, fmt.Sprintf("(%s %s %s OR (%s = %s AND id %s %s))", col, op, k, col, k, op, id))
	}
	query := `SELECT ` + productColumns + ` FROM products WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(" ORDER BY %s %s, id %s LIMIT %s", col, dir, dir, arg(q.Limit))
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("productsvc: list products: %w", err)
	}
	defer rows.Close()
	var out []Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, fmt.Errorf("productsvc: list products: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("productsvc: list products: %w", err)
	}
	return out, nil
}

// escapeLike escapes the LIKE wildcards of s for ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UpdateProduct implements Repository.
func (r *SQLRepository) UpdateProduct(ctx context.Context, id string, patch ProductPatch, events ProductEvents) (Product, error) {
	var nameKey, descKey, catKey *string
	if patch.Name != nil {
		s := foldCase(*patch.Name)
		nameKey = &s
	}
	if patch.Description != nil {
		s := foldCase(*patch.Description)
		descKey = &s
	}
	if patch.Category != nil {
		s := foldCase(*patch.Category)
		catKey = &s
	}
	var p Product
	err := r.inTx(ctx, "update product", func(tx *sql.Tx) error {
		var err error
		p, err = scanProduct(tx.QueryRowContext(ctx, `UPDATE products SET
			name = COALESCE($1, name), name_key = COALESCE($2, name_key),
			description = COALESCE($3, description), description_key = COALESCE($4, description_key),
			category = COALESCE($5, category), category_key = COALESCE($6, category_key),
			price_cents = COALESCE($7, price_cents),
			update_time = $8
			WHERE id = $9 AND delete_time IS NULL
			RETURNING `+productColumns,
			patch.Name, nameKey, patch.Description, descKey, patch.Category, catKey, patch.PriceCents,
			toMicros(patch.UpdateTime), id))
		if errors.Is(err, ErrNotFound) {
			return err
		}
		if err != nil {
			return fmt.Errorf("productsvc: update product: %w", err)
		}
		if events != nil {
			if err := addEvents(ctx, tx, events(p)); err != nil {
				return fmt.Errorf("productsvc: update product: %w", err)
			}
		}
		return nil
	})
	return p, err
}

// DeleteProduct implements Repository.
func (r *SQLRepository) DeleteProduct(ctx context.Context, id string, deleteTime time.Time, events ProductEvents) (Product, error) {
	var p Product
	err := r.inTx(ctx, "delete product", func(tx *sql.Tx) error {
		var err error
		p, err = scanProduct(tx.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products
			WHERE id = $1 AND delete_time IS NULL`, id))
		if errors.Is(err, ErrNotFound) {
			return err
		}
		if err != nil {
			return fmt.Errorf("productsvc: delete product: %w", err)
		}
		// Conditional, so that of two concurrent deletes only one wins (and
		// writes events) at any isolation level.
		res, err := tx.ExecContext(ctx, `UPDATE products SET delete_time = $1 WHERE id = $2 AND delete_time IS NULL`, toMicros(deleteTime), id)
		if err != nil {
			return fmt.Errorf("productsvc: delete product: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("productsvc: delete product: %w", err)
		} else if n == 0 {
			return ErrNotFound
		}
		if events != nil {
			if err := addEvents(ctx, tx, events(p)); err != nil {
				return fmt.Errorf("productsvc: delete product: %w", err)
			}
		}
		return nil
	})
	return p, err
}

// AdjustStock implements Repository.
func (r *SQLRepository) AdjustStock(ctx context.Context, id string, delta int64, updateTime time.Time, events ProductEvents) (Product, error) {
	if delta < -MaxStock || delta > MaxStock {
		return Product{}, fmt.Errorf("productsvc: adjust stock: %w", ErrStockLimit)
	}
	var p Product
	err := r.inTx(ctx, "adjust stock", func(tx *sql.Tx) error {
		var err error
		// The condition makes the check and the change one step, whatever
		// the isolation level.
		p, err = scanProduct(tx.QueryRowContext(ctx, `UPDATE products SET stock = stock + $1, update_time = $2
			WHERE id = $3 AND delete_time IS NULL AND stock + $1 >= 0 AND stock + $1 <= $4
			RETURNING `+productColumns, delta, toMicros(updateTime), id, int64(MaxStock)))
		if errors.Is(err, ErrNotFound) {
			// Unknown, or the condition failed: tell which.
			cur, gerr := scanProduct(tx.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products
				WHERE id = $1 AND delete_time IS NULL`, id))
			switch {
			case errors.Is(gerr, ErrNotFound):
				return ErrNotFound
			case gerr != nil:
				return fmt.Errorf("productsvc: adjust stock: %w", gerr)
			case cur.Stock+delta < 0:
				return &ItemError{ProductID: id, Requested: -delta, Available: cur.Stock, Err: ErrInsufficientStock}
			default:
				return ErrStockLimit
			}
		}
		if err != nil {
			return fmt.Errorf("productsvc: adjust stock: %w", err)
		}
		if events != nil {
			if err := addEvents(ctx, tx, events(p)); err != nil {
				return fmt.Errorf("productsvc: adjust stock: %w", err)
			}
		}
		return nil
	})
	return p, err
}

// Reserve implements Repository.
func (r *SQLRepository) Reserve(ctx context.Context, id string, items []StockRequest, now time.Time, events StockEvents) (Reservation, bool, error) {
	var (
		res      Reservation
		replayed bool
	)
	err := r.inTx(ctx, "reserve stock", func(tx *sql.Tx) error {
		// Claim the id first: a concurrent duplicate waits here (or, in
		// PostgreSQL, on the unique key) and then sees the stored one.
		ins, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, released, create_time)
			VALUES ($1, FALSE, $2) ON CONFLICT (id) DO NOTHING`, id, toMicros(now))
		if err != nil {
			return fmt.Errorf("productsvc: reserve stock: %w", err)
		}
		if n, err := ins.RowsAffected(); err != nil {
			return fmt.Errorf("productsvc: reserve stock: %w", err)
		} else if n == 0 {
			stored, err := readReservation(ctx, tx, id)
			if err != nil {
				return fmt.Errorf("productsvc: reserve stock: %w", err)
			}
			if stored.Released {
				return ErrReservationReleased
			}
			if !sameItems(stored.Items, items) {
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
				RETURNING name, price_cents, stock`, it.Quantity, toMicros(now), it.ProductID).Scan(&name, &price, &stock)
			if errors.Is(err, sql.ErrNoRows) {
				return itemFailure(ctx, tx, it)
			}
			if err != nil {
				return fmt.Errorf("productsvc: reserve stock: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO reservation_items
				(reservation_id, position, product_id, product_name, unit_price_cents, quantity)
				VALUES ($1, $2, $3, $4, $5, $6)`, id, i, it.ProductID, name, price, it.Quantity); err != nil {
				return fmt.Errorf("productsvc: reserve stock: %w", err)
			}
			res.Items = append(res.Items, ReservedItem{ProductID: it.ProductID, ProductName: name, UnitPriceCents: price, Quantity: it.Quantity})
			changes = append(changes, StockChange{ProductID: it.ProductID, Delta: -it.Quantity, Stock: stock})
		}
		if events != nil {
			if err := addEvents(ctx, tx, events(res, changes)); err != nil {
				return fmt.Errorf("productsvc: reserve stock: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Reservation{}, false, err
	}
	return res, replayed, nil
}

// itemFailure returns why the conditional stock update of it matched no row.
func itemFailure(ctx context.Context, tx *sql.Tx, it StockRequest) error {
	var stock int64
	err := tx.QueryRowContext(ctx, `SELECT stock FROM products WHERE id = $1 AND delete_time IS NULL`, it.ProductID).Scan(&stock)
	if errors.Is(err, sql.ErrNoRows) {
		return &ItemError{ProductID: it.ProductID, Requested: it.Quantity, Err: ErrNotFound}
	}
	if err != nil {
		return fmt.Errorf("productsvc: reserve stock: %w", err)
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
func readReservation(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string) (Reservation, error) {
	var (
		res      Reservation
		created  int64
		released sql.NullInt64
	)
	err := q.QueryRowContext(ctx, `SELECT id, released, create_time, release_time FROM reservations WHERE id = $1`, id).
		Scan(&res.ID, &res.Released, &created, &released)
	if errors.Is(err, sql.ErrNoRows) {
		return Reservation{}, ErrNotFound
	}
	if err != nil {
		return Reservation{}, err
	}
	res.CreateTime = fromMicros(created)
	if released.Valid {
		res.ReleaseTime = fromMicros(released.Int64)
	}
	rows, err := q.QueryContext(ctx, `SELECT product_id, product_name, unit_price_cents, quantity
		FROM reservation_items WHERE reservation_id = $1 ORDER BY position`, id)
	if err != nil {
		return Reservation{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var it ReservedItem
		if err := rows.Scan(&it.ProductID, &it.ProductName, &it.UnitPriceCents, &it.Quantity); err != nil {
			return Reservation{}, err
		}
		res.Items = append(res.Items, it)
	}
	return res, rows.Err()
}

// Release implements Repository.
func (r *SQLRepository) Release(ctx context.Context, id string, now time.Time, events StockEvents) (bool, error) {
	var released bool
	err := r.inTx(ctx, "release stock", func(tx *sql.Tx) error {
		// The conditional update is the exactly-once guard.
		upd, err := tx.ExecContext(ctx, `UPDATE reservations SET released = TRUE, release_time = $1
			WHERE id = $2 AND released = FALSE`, toMicros(now), id)
		if err != nil {
			return fmt.Errorf("productsvc: release stock: %w", err)
		}
		n, err := upd.RowsAffected()
		if err != nil {
			return fmt.Errorf("productsvc: release stock: %w", err)
		}
		if n == 0 {
			// Already released, or unknown: leave a release marker for the
			// latter so that a late reservation cannot leak stock.
			if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, released, create_time, release_time)
				VALUES ($1, TRUE, $2, $2) ON CONFLICT (id) DO NOTHING`, id, toMicros(now)); err != nil {
				return fmt.Errorf("productsvc: release stock: %w", err)
			}
			return nil
		}
		res, err := readReservation(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("productsvc: release stock: %w", err)
		}
		changes := make([]StockChange, 0, len(res.Items))
		for _, it := range res.Items {
			var (
				stock   int64
				deleted sql.NullInt64
			)
			// Deleted products get their stock back too, so the books balance.
			err := tx.QueryRowContext(ctx, `UPDATE products SET stock = stock + $1, update_time = $2
				WHERE id = $3 RETURNING stock, delete_time`, it.Quantity, toMicros(now), it.ProductID).Scan(&stock, &deleted)
			if err != nil {
				return fmt.Errorf("productsvc: release stock of %s: %w", it.ProductID, err)
			}
			changes = append(changes, StockChange{ProductID: it.ProductID, Delta: it.Quantity, Stock: stock, Deleted: deleted.Valid})
		}
		if events != nil {
			if err := addEvents(ctx, tx, events(res, changes)); err != nil {
				return fmt.Errorf("productsvc: release stock: %w", err)
			}
		}
		released = true
		return nil
	})
	return released, err
}

// SeedProducts implements Repository.
func (r *SQLRepository) SeedProducts(ctx context.Context, products []Product, events ProductEvents) (bool, error) {
	var seeded bool
	// The count and the inserts are one step: instances seeding together
	// wait for each other and only the first one seeds.
	err := r.inLockedTx(ctx, "seed products", "productsvc.seed", func(tx *sql.Tx) error {
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM products`).Scan(&n); err != nil {
			return fmt.Errorf("productsvc: seed products: %w", err)
		}
		if n > 0 {
			return nil
		}
		for _, p := range products {
			if err := insertProduct(ctx, tx, p); err != nil {
				return fmt.Errorf("productsvc: seed product %s: %w", p.SKU, err)
			}
			if events != nil {
				if err := addEvents(ctx, tx, events(p)); err != nil {
					return fmt.Errorf("productsvc: seed products: %w", err)
				}
			}
		}
		seeded = true
		return nil
	})
	return seeded, err
}

type scanner interface {
	Scan(dest ...any) error
}

// scanProduct reads one row of productColumns; sql.ErrNoRows becomes
// ErrNotFound.
func scanProduct(s scanner) (Product, error) {
	var (
		p                Product
		created, updated int64
	)
	err := s.Scan(&p.ID, &p.SKU, &p.Name, &p.Description, &p.Category, &p.PriceCents, &p.Stock, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, ErrNotFound
	}
	if err != nil {
		return Product{}, err
	}
	p.CreateTime = fromMicros(created)
	p.UpdateTime = fromMicros(updated)
	return p, nil
}

func toMicros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
