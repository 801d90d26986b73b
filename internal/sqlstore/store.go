package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// Store is the base of a service's SQL repository, to embed: the opened and
// migrated database, with DB for the outbox relay and Close.
type Store struct {
	db *DB
}

// OpenStore opens dsn with Open, applying migrations, and returns its Store.
func OpenStore(ctx context.Context, dsn string, migrations fs.FS) (Store, error) {
	db, err := Open(ctx, dsn, migrations)
	if err != nil {
		return Store{}, err
	}
	return Store{db: db}, nil
}

// SQL returns the database, for the repository's statements and
// transactions.
func (s Store) SQL() *DB { return s.db }

// DB returns the underlying database, for the outbox relay.
func (s Store) DB() *sql.DB { return s.db.DB }

// Close closes the database.
func (s Store) Close() error { return s.db.Close() }

// Dir returns the subdirectory dir of fsys, typically the migrations
// directory of an embed.FS. It panics when dir is not a valid path, which
// an embed pattern rules out.
func Dir(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Scanner is what *sql.Row and *sql.Rows have in common: a repository's
// scan function reads one row from either.
type Scanner interface {
	Scan(dest ...any) error
}

// ScanRow scans the row of s into dest; sql.ErrNoRows becomes notFound.
func ScanRow(s Scanner, notFound error, dest ...any) error {
	err := s.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	return err
}

// Querier is what DB, Tx, *sql.DB and *sql.Tx have in common for reading:
// code that reads the same way inside and outside a transaction takes one.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Micros returns t as stored: Unix microseconds.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros returns the UTC time of stored Unix microseconds us.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// MicrosInto returns a scan destination that reads a stored time (Unix
// microseconds, see Micros) into *t; NULL reads as the zero time.
func MicrosInto(t *time.Time) sql.Scanner { return (*microsDest)(t) }

// microsDest is a time.Time that scans from Unix microseconds.
type microsDest time.Time

// Scan implements sql.Scanner.
func (d *microsDest) Scan(v any) error {
	switch us := v.(type) {
	case nil:
		*d = microsDest{}
	case int64:
		*d = microsDest(FromMicros(us))
	default:
		return fmt.Errorf("sqlstore: scan %T as a time: want Unix microseconds", v)
	}
	return nil
}

// Cursor is a position in a (create_time, id) order, ascending or
// descending: a page starts right after it.
type Cursor struct {
	// CreateTime is the create time of the last row seen.
	CreateTime time.Time
	// ID is the id of the last row seen.
	ID string
}

// Token returns c as an opaque page token: base64url of
// "<create time in Unix microseconds>:<id>".
func (c Cursor) Token() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(Micros(c.CreateTime), 10) + ":" + c.ID))
}

// ParseCursor parses a page token of Cursor.Token.
func ParseCursor(token string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return Cursor{}, errors.New("missing id")
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || us < 0 {
		return Cursor{}, errors.New("bad time")
	}
	return Cursor{CreateTime: FromMicros(us), ID: id}, nil
}

// ScanAll reads every row of rows with scan, closes rows and returns the
// values in order.
func ScanAll[T any](rows *sql.Rows, scan func(Scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
