package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect is the kind of database behind a DSN.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DialectOf returns the dialect of dsn: Postgres for a postgres:// or
// postgresql:// URL, SQLite for anything else (a file path).
func DialectOf(dsn string) Dialect {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return Postgres
	}
	return SQLite
}

// DB is an open database and its dialect.
//
// On SQLite it is two pools of connections to the file: readers (the
// embedded *sql.DB: reads and QueryContext, QueryRowContext) and one
// writer, which runs the write transactions (InTx) and ExecContext, so
// that writes wait their turn in Go rather than in SQLite's busy handler,
// which sleeps and polls. WAL lets the readers read while it writes. Their
// QueryContext, QueryRowContext and ExecContext, and those of the
// transactions' Tx, run prepared statements, prepared once per connection
// and kept (at most 256 texts per pool; a query assembled from filters has
// one text per combination).
type DB struct {
	*sql.DB
	Dialect Dialect
	stmts   *stmtCache // the readers' statements; nil: not cached
	writer  *sql.DB    // SQLite's writer connection; nil: DB writes too
	wstmts  *stmtCache // the writer's statements
}

// write returns the pool that writes, and its statements.
func (db *DB) write() (*sql.DB, *stmtCache) {
	if db.writer != nil {
		return db.writer, db.wstmts
	}
	return db.DB, db.stmts
}

// beginTx begins a write transaction, after preparing the statements
// earlier transactions left pending.
func (db *DB) beginTx(ctx context.Context) (*sql.Tx, error) {
	w, stmts := db.write()
	stmts.prepare(ctx)
	return w.BeginTx(ctx, nil)
}

// Writer returns the connection pool that writes (on SQLite the one
// writer connection), for code that writes through database/sql directly,
// such as the outbox relay.
func (db *DB) Writer() *sql.DB {
	w, _ := db.write()
	return w
}

// Open opens dsn, a PostgreSQL URL or a SQLite file path (see DialectOf),
// and applies the migrations.
func Open(ctx context.Context, dsn string, migrations fs.FS) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("sqlstore: empty database DSN (want a SQLite file path or a postgres:// URL)")
	}
	if DialectOf(dsn) == Postgres {
		return OpenPostgres(ctx, dsn, migrations)
	}
	db, err := OpenSQLite(ctx, dsn, migrations)
	if err != nil {
		return nil, err
	}
	writer, err := sql.Open("sqlite", sqliteDSN(dsn))
	if err == nil {
		writer.SetMaxOpenConns(1)
		writer.SetMaxIdleConns(1)
		err = pingSQLite(ctx, writer)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: open writer of %s: %w", dsn, err)
	}
	return &DB{DB: db, Dialect: SQLite, stmts: newStmtCache(db), writer: writer, wstmts: newStmtCache(writer)}, nil
}

// postgresConnectWait bounds how long OpenPostgres waits for a server that
// does not answer yet (one starting next to the service).
const postgresConnectWait = 30 * time.Second

// OpenPostgres connects to the PostgreSQL database of the URL dsn, waiting
// up to 30s for a server that does not answer yet (but not when it answers
// with an error, such as a wrong password or an unknown database), and
// applies the migrations. Concurrent instances migrate one at a time under an advisory
// lock.
func OpenPostgres(ctx context.Context, dsn string, migrations fs.FS) (*DB, error) {
	safe := redact(dsn)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", safe, err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	db.SetConnMaxIdleTime(5 * time.Minute)
	// A server that answers with an error (a wrong password, no such
	// database) is not waited for: waiting will not help.
	err = ping(ctx, db, postgresConnectWait, 100*time.Millisecond, 2*time.Second, func(err error) bool {
		pe := (*pgconn.PgError)(nil)
		return !errors.As(err, &pe)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect to %s: %w", safe, err)
	}
	d := &DB{DB: db, Dialect: Postgres}
	if err := Migrate(ctx, d, migrations); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// redact returns dsn without its password, for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the PostgreSQL DSN"
	}
	return u.Redacted()
}

// OpenSQLite opens (creating it and its directory when missing) the SQLite
// database file at path in WAL mode, with foreign keys on, a 5s busy timeout
// and write transactions that take the write lock when they begin, then
// applies the migrations.
func OpenSQLite(ctx context.Context, path string, migrations fs.FS) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sqlstore: create directory of %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	// Every new connection runs the pragmas and reads the schema: keep
	// them all open once made, rather than database/sql's two idle ones,
	// so that concurrent calls do not open and close connections all the
	// time. SQLite reads use the CPU, so more connections than a few per
	// core only queue in SQLite instead of in database/sql.
	readers := max(8, 4*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(readers)
	db.SetMaxIdleConns(readers)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := pingSQLite(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	if err := Migrate(ctx, &DB{DB: db, Dialect: SQLite}, migrations); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// sqliteDSN returns the modernc.org/sqlite DSN of the file at path: WAL,
// foreign keys on, a 5s busy timeout, write transactions that take the
// write lock when they begin.
func sqliteDSN(path string) string {
	q := url.Values{}
	// busy_timeout first: switching to WAL takes a lock, which instances
	// opening a new file together must wait for rather than fail on.
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// pingSQLite opens the first connection, which runs the pragmas. Setting
// the journal mode can fail SQLITE_BUSY at once, without waiting out the
// busy timeout, while another instance opening the same new file migrates
// it; that is retried for up to 10s.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	return ping(ctx, db, 10*time.Second, 10*time.Millisecond, 500*time.Millisecond, func(err error) bool {
		var se *sqlite.Error
		return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
	})
}

// ping pings db until it answers, an error that retryable refuses, or
// within has passed, backing off from first doubling up to most, and
// returns the last error.
func ping(ctx context.Context, db *sql.DB, within, first, most time.Duration, retryable func(error) bool) error {
	wait, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for backoff := first; ; backoff = min(2*backoff, most) {
		err := db.PingContext(wait)
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-wait.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

// Migrate applies, in name order, every "*.sql" file of migrations that the
// schema_migrations table does not list yet, each in its own transaction with
// its placeholders expanded for db's dialect, and then the platform's own
// migrations (the idempotency_keys table of Idempotency), named
// "platform_*.sql". Instances starting together on
// one database are safe: each migration is checked and applied inside one
// transaction that SQLite (opened by OpenSQLite, BEGIN IMMEDIATE) runs one at
// a time, and that PostgreSQL runs under a transaction-scoped advisory lock.
func Migrate(ctx context.Context, db *DB, migrations fs.FS) error {
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("sqlstore: list migrations: %w", err)
	}
	sort.Strings(names)
	err = db.InTx(ctx, func(tx *Tx) error {
		if err := tx.Lock(ctx, migrationsLock); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: create schema_migrations: %w", err)
	}
	for _, name := range names {
		if err := apply(ctx, db, migrations, name); err != nil {
			return err
		}
	}
	platform := Dir(platformMigrations, "platform")
	names, _ = fs.Glob(platform, "*.sql")
	sort.Strings(names)
	for _, name := range names {
		if err := apply(ctx, db, platform, name); err != nil {
			return err
		}
	}
	return nil
}

//go:embed platform/*.sql
var platformMigrations embed.FS

// apply runs one migration unless it is recorded as applied, checking and
// applying in the same transaction.
func apply(ctx context.Context, db *DB, migrations fs.FS, name string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		if err := tx.Lock(ctx, migrationsLock); err != nil {
			return err
		}
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
		for _, stmt := range Statements(db.Dialect, string(body)) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("sqlstore: migration %s: %w", name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES ($1)`, name); err != nil {
			return fmt.Errorf("sqlstore: migration %s: %w", name, err)
		}
		return nil
	})
}

// migrationsLock is the lock (see Tx.Lock) that migrations of one database
// take, so that instances starting together apply them one at a time.
const migrationsLock = "migrations"

// placeholders maps each migration placeholder to its text per dialect.
var placeholders = map[string]map[Dialect]string{
	"{{id}}": {
		SQLite:   "INTEGER PRIMARY KEY AUTOINCREMENT",
		Postgres: "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
	},
	"{{bytes}}": {SQLite: "BLOB", Postgres: "BYTEA"},
}

// Statements splits a migration into its statements (separated by ";" at
// the end of a line) with the placeholders expanded for dialect d.
func Statements(d Dialect, body string) []string {
	for ph, by := range placeholders {
		body = strings.ReplaceAll(body, ph, by[d])
	}
	var out []string
	for stmt := range strings.SplitSeq(body, ";\n") {
		if strings.TrimSpace(stmt) != "" {
			out = append(out, stmt)
		}
	}
	return out
}

// IsUniqueViolation reports whether err is a unique or primary key violation
// on column of table, in either dialect.
func IsUniqueViolation(err error, table, column string) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return (c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) &&
			strings.Contains(se.Error(), table+"."+column)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Detail reads "Key (column)=(value) already exists."
		return pe.Code == "23505" && pe.TableName == table && strings.HasPrefix(pe.Detail, "Key ("+column+")=")
	}
	return false
}
