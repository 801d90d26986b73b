package usersvc

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/kgrpc/platform/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the users store, the outbox
// table included.
func Migrations() fs.FS { return sqlstore.Dir(migrationFiles, "migrations") }

// SQLRepository is a Repository in a SQLite file or a PostgreSQL database:
// one SQL text for both ($n placeholders, portable constructs). Its DB and
// Close come from the embedded sqlstore.Store.
type SQLRepository struct{ sqlstore.Store }

// Open opens the users database of dsn, a PostgreSQL URL or a SQLite file
// path (created when missing; see sqlstore.Open), and applies its migrations.
func Open(ctx context.Context, dsn string) (*SQLRepository, error) {
	return sqlstore.OpenRepository[SQLRepository](ctx, "usersvc", dsn, Migrations())
}

// Create implements Repository.
func (r *SQLRepository) Create(ctx context.Context, u User, events UserEvents) error {
	err := r.SQL().InTx(ctx, func(tx *sqlstore.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			u.ID, u.Email, u.EmailNormalized, u.DisplayName, string(u.Role), u.PasswordHash, u.TokenVersion,
			sqlstore.Micros(u.CreateTime), sqlstore.Micros(u.UpdateTime))
		if sqlstore.IsUniqueViolation(err, "users", "email_normalized") {
			return ErrEmailTaken
		}
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(u)...)
	})
	if err != nil {
		return fmt.Errorf("usersvc: create user: %w", err)
	}
	return nil
}

// Get implements Repository.
func (r *SQLRepository) Get(ctx context.Context, id string) (User, error) {
	u, err := scanUser(r.SQL().QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, fmt.Errorf("usersvc: get user: %w", err)
	}
	return u, nil
}

// GetByEmail implements Repository.
func (r *SQLRepository) GetByEmail(ctx context.Context, emailNormalized string) (User, error) {
	u, err := scanUser(r.SQL().QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_normalized = $1`, emailNormalized))
	if err != nil {
		return User{}, fmt.Errorf("usersvc: get user by email: %w", err)
	}
	return u, nil
}

// Update implements Repository.
func (r *SQLRepository) Update(ctx context.Context, id string, p UserPatch, events UserEvents) (User, error) {
	var role *string
	if p.Role != nil {
		s := string(*p.Role)
		role = &s
	}
	// A unit of work like every write, so that it commits with the call's
	// recorded outcome (kafkatransport/idempotency) or not at all.
	var u User
	err := r.SQL().InTx(ctx, func(tx *sqlstore.Tx) (err error) {
		u, err = scanUser(tx.QueryRowContext(ctx, `UPDATE users SET
			display_name = COALESCE($1, display_name),
			password_hash = COALESCE($2, password_hash),
			role = COALESCE($3, role),
			token_version = token_version + $4,
			update_time = $5
			WHERE id = $6
			RETURNING `+userColumns,
			p.DisplayName, p.PasswordHash, role, p.revokes(), sqlstore.Micros(p.UpdateTime), id))
		if err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(u)...)
	})
	if err != nil {
		return User{}, fmt.Errorf("usersvc: update user: %w", err)
	}
	return u, nil
}

// Delete implements Repository.
func (r *SQLRepository) Delete(ctx context.Context, id string, events UserEvents) (User, error) {
	var u User
	err := r.SQL().InTx(ctx, func(tx *sqlstore.Tx) (err error) {
		if u, err = scanUser(tx.QueryRowContext(ctx, `DELETE FROM users WHERE id = $1 RETURNING `+userColumns, id)); err != nil {
			return err
		}
		return tx.AddEvents(ctx, events.Of(u)...)
	})
	if err != nil {
		return User{}, fmt.Errorf("usersvc: delete user: %w", err)
	}
	return u, nil
}

// List implements Repository.
func (r *SQLRepository) List(ctx context.Context, after *Cursor, limit int) ([]User, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if after == nil {
		rows, err = r.SQL().QueryContext(ctx, `SELECT `+userColumns+` FROM users
			ORDER BY create_time, id LIMIT $1`, limit)
	} else {
		// (create_time, id) > ($1, $2), spelled out for planners that do not
		// use an index for row-value comparisons.
		rows, err = r.SQL().QueryContext(ctx, `SELECT `+userColumns+` FROM users
			WHERE create_time > $1 OR (create_time = $1 AND id > $2)
			ORDER BY create_time, id LIMIT $3`, sqlstore.Micros(after.CreateTime), after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("usersvc: list users: %w", err)
	}
	users, err := sqlstore.ScanAll(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("usersvc: list users: %w", err)
	}
	return users, nil
}

// userColumns are the columns of a row that scanUser reads.
const userColumns = `id, email, email_normalized, display_name, role, password_hash, token_version, create_time, update_time`

// scanUser reads one row of userColumns; sql.ErrNoRows becomes ErrNotFound.
func scanUser(s sqlstore.Scanner) (User, error) {
	var u User
	err := sqlstore.ScanRow(s, ErrNotFound, &u.ID, &u.Email, &u.EmailNormalized, &u.DisplayName, (*string)(&u.Role),
		&u.PasswordHash, &u.TokenVersion, sqlstore.MicrosInto(&u.CreateTime), sqlstore.MicrosInto(&u.UpdateTime))
	if err != nil {
		return User{}, err
	}
	return u, nil
}
