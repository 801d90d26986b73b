package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"testing/fstest"
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
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != 2 {
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
