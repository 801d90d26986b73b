// Package sqltest gives tests their own databases, SQLite and PostgreSQL, so
// that one repository suite runs against both.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// EnvPostgres names the variable holding the DSN (a postgres:// URL) of a
// PostgreSQL server that tests may create databases on. scripts/test.sh
// starts one and sets it.
const EnvPostgres = "TEST_POSTGRES_DSN"

// DSNs returns the database kinds a repository suite runs against, each
// with a function that makes a fresh, empty database and returns its DSN:
// "sqlite" always, "postgres" on the server of TEST_POSTGRES_DSN (see
// Postgres).
func DSNs() map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   SQLite,
		"postgres": Postgres,
	}
}

// SQLite returns the path of a new SQLite file in t.TempDir().
func SQLite(t *testing.T) string {
	return filepath.Join(t.TempDir(), "test.db")
}

// Postgres creates an empty database on the PostgreSQL server of
// TEST_POSTGRES_DSN, drops it when t ends, and returns its DSN. Without
// TEST_POSTGRES_DSN it skips t, or fails it when CI=true: CI always runs the
// PostgreSQL suites.
func Postgres(t *testing.T) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI runs the PostgreSQL suites (scripts/test.sh sets it)", EnvPostgres)
		}
		t.Skipf("PostgreSQL suite skipped: %s is not set (scripts/test.sh starts a server and sets it)", EnvPostgres)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "kgrpc_test_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		db.Close()
		t.Fatalf("create test database on %s: %v", u.Redacted(), err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
