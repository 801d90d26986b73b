package usersvc

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the users store, the outbox
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

// Open opens the users database of dsn, a PostgreSQL URL or a SQLite file
// path (created when missing; see sqlstore.Open), and applies its migrations.
func Open(ctx context.Context, dsn string) (*SQLRepository, error) {
	db, err := sqlstore.Open(ctx, dsn, Migrations())
	if err != nil {
		return nil, fmt.Errorf("usersvc: %w", err)
	}
	return &SQLRepository{db: db}, nil
}

// DB returns the underlying database, for the outbox relay.
func (r *SQLRepository) DB() *sql.DB { return r.db.DB }

// Close closes the database.
func (r *SQLRepository) Close() error { return r.db.Close() }

const userColumns = `id, email, email_normalized, display_name, role, password_hash, create_time, update_time`

// Create implements Repository.
func (r *SQLRepository) Create(ctx context.Context, u User, events ...proto.Message) (err error) {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("usersvc: create user: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	_, err = tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		u.ID, u.Email, u.EmailNormalized, u.DisplayName, string(u.Role), u.PasswordHash,
		toMicros(u.CreateTime), toMicros(u.UpdateTime))
	if err != nil {
		if sqlstore.IsUniqueViolation(err, "users", "email_normalized") {
			return ErrEmailTaken
		}
		return fmt.Errorf("usersvc: create user: %w", err)
	}
	for _, ev := range events {
		if err = outbox.Add(ctx, tx, ev); err != nil {
			return fmt.Errorf("usersvc: create user: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("usersvc: create user: commit: %w", err)
	}
	return nil
}

// Get implements Repository.
func (r *SQLRepository) Get(ctx context.Context, id string) (User, error) {
	u, err := scanUser(r.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, fmt.Errorf("usersvc: get user: %w", err)
	}
	return u, nil
}

// GetByEmail implements Repository.
func (r *SQLRepository) GetByEmail(ctx context.Context, emailNormalized string) (User, error) {
	u, err := scanUser(r.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_normalized = $1`, emailNormalized))
	if err != nil {
		return User{}, fmt.Errorf("usersvc: get user by email: %w", err)
	}
	return u, nil
}

// Update implements Repository.
func (r *SQLRepository) Update(ctx context.Context, id string, p UserPatch) (User, error) {
	var role *string
	if p.Role != nil {
		s := string(*p.Role)
		role = &s
	}
	u, err := scanUser(r.db.QueryRowContext(ctx, `UPDATE users SET
		display_name = COALESCE($1, display_name),
		password_hash = COALESCE($2, password_hash),
		role = COALESCE($3, role),
		update_time = $4
		WHERE id = $5
		RETURNING `+userColumns,
		p.DisplayName, p.PasswordHash, role, toMicros(p.UpdateTime), id))
	if err != nil {
		return User{}, fmt.Errorf("usersvc: update user: %w", err)
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
		rows, err = r.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users
			ORDER BY create_time, id LIMIT $1`, limit)
	} else {
		// (create_time, id) > ($1, $2), spelled out for planners that do not
		// use an index for row-value comparisons.
		rows, err = r.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users
			WHERE create_time > $1 OR (create_time = $1 AND id > $2)
			ORDER BY create_time, id LIMIT $3`, toMicros(after.CreateTime), after.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("usersvc: list users: %w", err)
	}
	defer rows.Close()
	var users []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("usersvc: list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("usersvc: list users: %w", err)
	}
	return users, nil
}

type scanner interface {
	Scan(dest ...any) error
}

// scanUser reads one row of userColumns; sql.ErrNoRows becomes ErrNotFound.
func scanUser(s scanner) (User, error) {
	var (
		u                User
		role             string
		created, updated int64
	)
	err := s.Scan(&u.ID, &u.Email, &u.EmailNormalized, &u.DisplayName, &role, &u.PasswordHash, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, err
	}
	u.Role = auth.Role(role)
	u.CreateTime = fromMicros(created)
	u.UpdateTime = fromMicros(updated)
	return u, nil
}

func toMicros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
