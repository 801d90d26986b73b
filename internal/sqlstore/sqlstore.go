// Package sqlstore opens a service's SQL database and applies its embedded
// schema migrations. Each service owns its own database and migrations; this
// package only holds what opening one has in common.
package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// OpenSQLite opens (creating it and its directory when missing) the SQLite
// database file at path in WAL mode, with foreign keys on, a 5s busy timeout
// and write transactions that take the write lock when they begin, then
// applies the migrations.
func OpenSQLite(ctx context.Context, path string, migrations fs.FS) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlstore: create directory of %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	if err := Migrate(ctx, db, migrations); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Migrate applies, in name order, every "*.sql" file of migrations that the
// schema_migrations table does not list yet, each in its own transaction.
// Instances starting together on one database are safe: each migration is
// checked and applied inside one write transaction, which SQLite (opened by
// OpenSQLite, BEGIN IMMEDIATE) runs one at a time.
func Migrate(ctx context.Context, db *sql.DB, migrations fs.FS) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("sqlstore: create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("sqlstore: list migrations: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := apply(ctx, db, migrations, name); err != nil {
			return err
		}
	}
	return nil
}

// apply runs one migration unless it is recorded as applied, checking and
// applying in the same transaction.
func apply(ctx context.Context, db *sql.DB, migrations fs.FS, name string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: migration %s: %w", name, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
		return fmt.Errorf("sqlstore: read schema_migrations: %w", err)
	}
	if n > 0 {
		return nil
	}
	body, err := fs.ReadFile(migrations, name)
	if err != nil {
		return fmt.Errorf("sqlstore: read migration %s: %w", name, err)
	}
	for _, stmt := range strings.Split(string(body), ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlstore: migration %s: %w", name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES ($1)`, name); err != nil {
		return fmt.Errorf("sqlstore: migration %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: migration %s: %w", name, err)
	}
	return nil
}
