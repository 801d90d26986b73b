package sqlstore

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
)

func TestOpenSQLiteMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "db.sqlite")
	migs := fstest.MapFS{
		"001_init.sql": {Data: []byte("CREATE TABLE a (id TEXT PRIMARY KEY);\nCREATE TABLE b (id TEXT PRIMARY KEY);\n")},
		"002_more.sql": {Data: []byte("ALTER TABLE a ADD COLUMN n INTEGER NOT NULL DEFAULT 0;\n")},
		"README.txt":   {Data: []byte("not a migration")},
	}
	for range 2 { // the second open must not re-apply anything
		db, err := OpenSQLite(ctx, path, migs)
		if err != nil {
			t.Fatal(err)
		}
		var mode string
		if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal_mode = %q, %v", mode, err)
		}
		var n int // migs' two and the platform's two
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != 4 {
			t.Fatalf("schema_migrations rows = %d, %v", n, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO a (id, n) VALUES ('x', 1) ON CONFLICT DO NOTHING"); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	bad := fstest.MapFS{"001_bad.sql": {Data: []byte("CREATE TABLE;\n")}}
	if _, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "bad.sqlite"), bad); err == nil {
		t.Fatal("bad migration accepted")
	}
}

func TestConcurrentOpensMigrateOnce(t *testing.T) {
	// Instances of one service starting together on one fresh database,
	// each with its own connection pool, as separate processes would.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	migs := fstest.MapFS{"001_init.sql": {Data: []byte("CREATE TABLE a (id TEXT PRIMARY KEY);\nCREATE TABLE b (id TEXT PRIMARY KEY);\n")}}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			db, err := OpenSQLite(ctx, path, migs)
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
}

// Open picks the dialect from the DSN; migrations with placeholders apply
// once on each, also when instances open one fresh database together; unique
// violations are recognised on each.
func TestOpenEachDialect(t *testing.T) {
	migs := fstest.MapFS{
		"001_init.sql": {Data: []byte("CREATE TABLE a (id {{id}}, k TEXT NOT NULL UNIQUE, body {{bytes}});\nCREATE TABLE b (id TEXT PRIMARY KEY);\n")},
		"002_more.sql": {Data: []byte("ALTER TABLE b ADD COLUMN n BIGINT NOT NULL DEFAULT 0;\n")},
	}
	for name, newDSN := range sqltest.DSNs() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			dsn := newDSN(t)
			if got := DialectOf(dsn); string(got) != name {
				t.Fatalf("DialectOf(%s) = %s, want %s", dsn, got, name)
			}
			errs := make(chan error, 4)
			for range 4 {
				go func() {
					db, err := Open(ctx, dsn, migs)
					if err == nil {
						db.Close()
					}
					errs <- err
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatalf("concurrent open: %v", err)
				}
			}
			db, err := Open(ctx, dsn, migs)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			// The two of migs, and the platform's two (idempotency_keys,
			// the outbox's trace_context).
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != 4 {
				t.Fatalf("schema_migrations rows = %d, %v", n, err)
			}
			for i, want := range []bool{false, true} {
				_, err := db.ExecContext(ctx, "INSERT INTO a (k, body) VALUES ($1, $2)", "x", []byte{0, 1})
				if got := IsUniqueViolation(err, "a", "k"); got != want || (!want && err != nil) {
					t.Fatalf("insert #%d: err %v, unique violation %v, want %v", i, err, got, want)
				}
				if want && IsUniqueViolation(err, "a", "id") {
					t.Fatal("violation on k reported as one on id")
				}
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO b (id) VALUES ('p')"); err != nil {
				t.Fatal(err)
			}
			_, err = db.ExecContext(ctx, "INSERT INTO b (id) VALUES ('p')")
			if !IsUniqueViolation(err, "b", "id") {
				t.Fatalf("primary key violation not recognised: %v", err)
			}
			var ids []int64
			for range 2 {
				var id int64
				if err := db.QueryRowContext(ctx, "INSERT INTO a (k, body) VALUES ($1, $2) RETURNING id", fmt.Sprint(len(ids)+10), []byte("b")).Scan(&id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if ids[1] <= ids[0] {
				t.Fatalf("{{id}} ids %v do not increase", ids)
			}
		})
	}
}

func TestOpenPostgresReportsUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://u:secret-pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=1", fstest.MapFS{})
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// A server that answers with an error (here: no such database) fails at
// once rather than after the 30s wait for a starting server.
func TestOpenPostgresFailsFastOnServerErrors(t *testing.T) {
	dsn := sqltest.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_database_here"
	start := time.Now()
	_, err = Open(t.Context(), u.String(), fstest.MapFS{})
	if err == nil || !strings.Contains(err.Error(), "no_such_database_here") {
		t.Fatalf("Open of an unknown database = %v, want an error naming it", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %v to report a server error, want it at once", d)
	}
}
