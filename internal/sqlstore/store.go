package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// Store is the base of a service's SQL repository, to embed: the opened and
// migrated database, with DB for the outbox relay and Close. OpenRepository
// opens a repository type that embeds it.
type Store struct {
	db *DB
}

// repository is a pointer to a repository type R that embeds Store.
type repository[R any] interface {
	*R
	attach(db *DB)
}

func (s *Store) attach(db *DB) { s.db = db }

// OpenRepository opens dsn with Open, applying migrations, and returns a
// new R, a repository type embedding Store, on that database. Errors start
// with service, the name of the service whose database it is.
func OpenRepository[R any, P repository[R]](ctx context.Context, service, dsn string, migrations fs.FS) (*R, error) {
	db, err := Open(ctx, dsn, migrations)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", service, err)
	}
	r := new(R)
	P(r).attach(db)
	return r, nil
}

// SQL returns the database, for the repository's statements and
// transactions.
func (s Store) SQL() *DB { return s.db }

// DB returns the underlying database (on SQLite its readers), for
// checks; the outbox relay writes with SQL().Writer().
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

// Affected returns how many rows the statement of res changed, or err: it
// takes what ExecContext returns, as in
//
//	n, err := sqlstore.Affected(tx.ExecContext(ctx, query, args...))
func Affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
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

// PageRequest reads the page_size and page_token of a list request: a
// size of 0 means def (a negative one too, which the request's rules
// refuse before), larger sizes are capped at max, and token is a Cursor's
// Token or "" for the first page. Its error is fit for the caller
// ("malformed page_token").
func PageRequest(size int32, token string, def, max int) (int, *Cursor, error) {
	n := int(size)
	switch {
	case n <= 0:
		n = def
	case n > max:
		n = max
	}
	if token == "" {
		return n, nil, nil
	}
	c, err := ParseCursor(token)
	if err != nil {
		return 0, nil, errors.New("malformed page_token")
	}
	return n, &c, nil
}

// NextPage cuts rows, read with a limit of size+1, to one page of size and
// returns it with the page token of the next page: the Token of the last
// row's cursor, or "" when rows held no more than size.
func NextPage[T any](rows []T, size int, cursor func(T) Cursor) ([]T, string) {
	if len(rows) <= size {
		return rows, ""
	}
	rows = rows[:size]
	return rows, cursor(rows[size-1]).Token()
}

// NewID returns a new row id: prefix and 16 lower-case hex digits from
// crypto/rand ("u_3f9a..."), for the services' users, products and orders.
func NewID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read documents it)
	return prefix + hex.EncodeToString(b[:])
}
