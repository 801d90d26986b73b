package productsvc

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"io/fs"
	"strings"
	"time"

	"github.com/kgrpc/platform/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the products store, the outbox
// table included.
func Migrations() fs.FS { return sqlstore.Dir(migrationFiles, "migrations") }

// SQLRepository is a Repository in a SQLite file or a PostgreSQL database:
// one SQL text for both ($n placeholders, portable constructs). Its DB and
// Close come from the embedded sqlstore.Store.
type SQLRepository struct{ sqlstore.Store }

// Open opens the products database of dsn, a PostgreSQL URL or a SQLite file
// path (created when missing; see sqlstore.Open), and applies its migrations.
func Open(ctx context.Context, dsn string) (*SQLRepository, error) {
	return sqlstore.OpenRepository[SQLRepository](ctx, "productsvc", dsn, Migrations())
}

// write runs fn as one unit of work (see sqlstore.DB.InTx) and wraps its
// failure as op's; the errors of the Repository contract stay matchable
// with errors.Is and errors.As.
func (r *SQLRepository) write(ctx context.Context, op string, fn func(tx *sqlstore.Tx) error) error {
	if err := r.SQL().InTx(ctx, fn); err != nil {
		return fmt.Errorf("productsvc: %s: %w", op, err)
	}
	return nil
}

func insertProduct(ctx context.Context, tx *sqlstore.Tx, p Product) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO products (
		id, sku, sku_key, name, name_key, description, description_key, category, category_key,
		price_cents, stock, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		p.ID, p.SKU, foldCase(p.SKU), p.Name, foldCase(p.Name), p.Description, foldCase(p.Description),
		p.Category, foldCase(p.Category), p.PriceCents, p.Stock, sqlstore.Micros(p.CreateTime), sqlstore.Micros(p.UpdateTime))
	if sqlstore.IsUniqueViolation(err, "products", "sku_key") {
		return ErrSKUTaken
	}
	return err
}

// CreateProduct implements Repository.
func (r *SQLRepository) CreateProduct(ctx context.Context, p Product, events ProductEvents) error {
	return r.write(ctx, "create product", func(tx *sqlstore.Tx) error {
		if err := insertProduct(ctx, tx, p); err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(p)...)
	})
}

// GetProduct implements Repository.
func (r *SQLRepository) GetProduct(ctx context.Context, id string) (Product, error) {
	p, err := getProduct(ctx, r.SQL(), id)
	if err != nil {
		return Product{}, fmt.Errorf("productsvc: get product: %w", err)
	}
	return p, nil
}

// ImportProduct implements Repository.
func (r *SQLRepository) ImportProduct(ctx context.Context, p Product, events func(p Product, created bool, delta int64) []proto.Message) (bool, error) {
	var created bool
	err := r.write(ctx, "import product", func(tx *sqlstore.Tx) error {
		// Setting a column to itself takes the row's write lock on
		// PostgreSQL before it is read; SQLite's one writer serializes
		// anyway. The stock is set, not added to, so a reservation in
		// between cannot make it wrong, only replaced.
		old, err := scanProduct(tx.QueryRowContext(ctx, `UPDATE products SET sku = sku
			WHERE sku_key = $1 AND delete_time IS NULL RETURNING `+productColumns, foldCase(p.SKU)))
		if errors.Is(err, ErrNotFound) {
			created = true
			if err := insertProduct(ctx, tx, p); err != nil {
				return err
			}
			return tx.AddEvents(ctx, events(p, true, p.Stock)...)
		}
		if err != nil {
			return err
		}
		stored, err := scanProduct(tx.QueryRowContext(ctx, `UPDATE products SET
			name = $1, name_key = $2, description = $3, description_key = $4, category = $5, category_key = $6,
			price_cents = $7, stock = $8, update_time = $9
			WHERE id = $10 RETURNING `+productColumns,
			p.Name, foldCase(p.Name), p.Description, foldCase(p.Description), p.Category, foldCase(p.Category),
			p.PriceCents, p.Stock, sqlstore.Micros(p.UpdateTime), old.ID))
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, events(stored, false, stored.Stock-old.Stock)...)
	})
	return created, err
}

// getProduct reads the live product id, or ErrNotFound.
func getProduct(ctx context.Context, q sqlstore.Querier, id string) (Product, error) {
	return scanProduct(q.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products
		WHERE id = $1 AND delete_time IS NULL`, id))
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
			key = sqlstore.Micros(q.After.CreateTime)
		}
		k, id := arg(key), arg(q.After.ID)
		// (col, id) op (k, id), spelled out for planners that do not use an
		// index for row-value comparisons.
		where = append(where, fmt.Sprintf("(%s %s %s OR (%s = %s AND id %s %s))", col, op, k, col, k, op, id))
	}
	query := `SELECT ` + productColumns + ` FROM products WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(" ORDER BY %s %s, id %s LIMIT %s", col, dir, dir, arg(q.Limit))
	rows, err := r.SQL().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("productsvc: list products: %w", err)
	}
	out, err := sqlstore.ScanAll(rows, scanProduct)
	if err != nil {
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
	err := r.write(ctx, "update product", func(tx *sqlstore.Tx) error {
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
			sqlstore.Micros(patch.UpdateTime), id))
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(p)...)
	})
	return p, err
}

// DeleteProduct implements Repository.
func (r *SQLRepository) DeleteProduct(ctx context.Context, id string, deleteTime time.Time, events ProductEvents) (Product, error) {
	var p Product
	err := r.write(ctx, "delete product", func(tx *sqlstore.Tx) error {
		var err error
		if p, err = getProduct(ctx, tx, id); err != nil {
			return err
		}
		// Conditional, so that of two concurrent deletes only one wins (and
		// writes events) at any isolation level.
		n, err := sqlstore.Affected(tx.ExecContext(ctx, `UPDATE products SET delete_time = $1 WHERE id = $2 AND delete_time IS NULL`,
			sqlstore.Micros(deleteTime), id))
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return tx.AddEvents(ctx, events.Of(p)...)
	})
	return p, err
}

// AdjustStock implements Repository.
func (r *SQLRepository) AdjustStock(ctx context.Context, id string, delta int64, updateTime time.Time, events ProductEvents) (Product, error) {
	if delta < -MaxStock || delta > MaxStock {
		return Product{}, fmt.Errorf("productsvc: adjust stock: %w", ErrStockLimit)
	}
	var p Product
	err := r.write(ctx, "adjust stock", func(tx *sqlstore.Tx) error {
		var err error
		// The condition makes the check and the change one step, whatever
		// the isolation level.
		p, err = scanProduct(tx.QueryRowContext(ctx, `UPDATE products SET stock = stock + $1, update_time = $2
			WHERE id = $3 AND delete_time IS NULL AND stock + $1 >= 0 AND stock + $1 <= $4
			RETURNING `+productColumns, delta, sqlstore.Micros(updateTime), id, int64(MaxStock)))
		if errors.Is(err, ErrNotFound) {
			// Unknown, or the condition failed: tell which.
			cur, err := getProduct(ctx, tx, id)
			switch {
			case err != nil:
				return err
			case cur.Stock+delta < 0:
				return &ItemError{ProductID: id, Requested: -delta, Available: cur.Stock, Err: ErrInsufficientStock}
			default:
				return ErrStockLimit
			}
		}
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(p)...)
	})
	return p, err
}

// SeedProducts implements Repository.
func (r *SQLRepository) SeedProducts(ctx context.Context, products []Product, events ProductEvents) (bool, error) {
	var seeded bool
	err := r.write(ctx, "seed products", func(tx *sqlstore.Tx) error {
		// The count and the inserts are one step: instances seeding
		// together wait for each other and only the first one seeds.
		if err := tx.Lock(ctx, "productsvc.seed"); err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM products`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		for _, p := range products {
			if err := insertProduct(ctx, tx, p); err != nil {
				return fmt.Errorf("product %s: %w", p.SKU, err)
			}
			if err := tx.AddEvents(ctx, events.Of(p)...); err != nil {
				return err
			}
		}
		seeded = true
		return nil
	})
	return seeded, err
}

// productColumns are the columns of a row that scanProduct reads.
const productColumns = `id, sku, name, description, category, price_cents, stock, create_time, update_time`

// scanProduct reads one row of productColumns; sql.ErrNoRows becomes
// ErrNotFound.
func scanProduct(s sqlstore.Scanner) (Product, error) {
	var p Product
	err := sqlstore.ScanRow(s, ErrNotFound, &p.ID, &p.SKU, &p.Name, &p.Description, &p.Category, &p.PriceCents, &p.Stock,
		sqlstore.MicrosInto(&p.CreateTime), sqlstore.MicrosInto(&p.UpdateTime))
	if err != nil {
		return Product{}, err
	}
	return p, nil
}
