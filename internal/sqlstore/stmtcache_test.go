package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// openSQLite opens a SQLite DB in the test's directory with the one
// migration schema, closed when the test ends.
func openSQLite(t *testing.T, schema string) *DB {
	t.Helper()
	migs := fstest.MapFS{"001_init.sql": {Data: []byte(schema + ";\n")}}
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"), migs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStatementCache checks that a SQLite DB prepares each statement text
// once per pool (readers, writer) and runs it on every connection and in
// transactions, that a statement that does not prepare is not kept and still reports its error,
// that the cache stays bounded, and that a statement prepared before a
// schema change still runs after it.
func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t, "CREATE TABLE a (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
	count := func(c *stmtCache) int {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return len(c.m)
	}
	cached := func() int { return count(db.stmts) + count(db.wstmts) }
	base := cached()

	const insert = "INSERT INTO a (id, n) VALUES ($1, $2)"
	const read = "SELECT n FROM a WHERE id = $1"
	var wg sync.WaitGroup
	for i := range 32 { // concurrent: several connections, one statement each
		wg.Go(func() {
			if _, err := db.ExecContext(ctx, insert, fmt.Sprint("k", i), i); err != nil {
				t.Error(err)
			}
			var n int
			if err := db.QueryRowContext(ctx, read, fmt.Sprint("k", i)).Scan(&n); err != nil || n != i {
				t.Errorf("read k%d = %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	if got := cached() - base; got != 2 || count(db.wstmts) != 1 {
		t.Fatalf("cached statements after two texts run 64 times: %d (writer's %d), want 2 (the writer's 1)", got, count(db.wstmts))
	}

	inTx := func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE a SET n = n + 100 WHERE id = $1", "k1"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, read, "k1").Scan(&n); err != nil || n != 101 {
			return fmt.Errorf("read in transaction = %d, %v", n, err)
		}
		rows, err := tx.QueryContext(ctx, "SELECT id FROM a ORDER BY id")
		if err != nil {
			return err
		}
		defer rows.Close()
		count := 0
		for rows.Next() {
			count++
		}
		if count != 32 {
			return fmt.Errorf("rows in transaction = %d, want 32", count)
		}
		return rows.Err()
	}
	// The writer's one connection is the transaction's while it runs: its
	// new texts run unprepared, and the next transaction prepares them.
	if err := db.InTx(ctx, inTx); err != nil {
		t.Fatal(err)
	}
	if got := cached() - base; got != 2 || len(db.wstmts.pending) != 3 {
		t.Fatalf("after a transaction's three new texts: %d cached, %d pending; want 2 and 3", got, len(db.wstmts.pending))
	}
	if err := db.InTx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE a SET n = n - 100 WHERE id = $1", "k1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := cached() - base; got != 5 || len(db.wstmts.pending) != 1 { // its own new text
		t.Fatalf("after the next transaction: %d cached, %d pending; want 5 and 1", got, len(db.wstmts.pending))
	}
	if err := db.InTx(ctx, inTx); err != nil { // now prepared
		t.Fatal(err)
	}

	if _, err := db.ExecContext(ctx, "INSERT INTO nowhere VALUES (1)"); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("statement on a missing table: %v", err)
	}
	if got := cached() - base; got != 6 { // the pending text was prepared first
		t.Fatalf("a statement that does not prepare was cached: %d", got)
	}

	// A schema change under a prepared statement: SQLite prepares it
	// again by itself.
	if _, err := db.DB.ExecContext(ctx, "ALTER TABLE a ADD COLUMN note TEXT NOT NULL DEFAULT 'x'"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, read, "k2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("read after a schema change = %d, %v", n, err)
	}

	for i := range maxCachedStatements + 10 { // distinct texts beyond the bound still run
		var v int
		if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&v); err != nil || v != i {
			t.Fatalf("SELECT %d = %d, %v", i, v, err)
		}
	}
	if got := count(db.stmts); got != maxCachedStatements {
		t.Fatalf("cached statements: %d, want the bound %d", got, maxCachedStatements)
	}
}

// TestWriterHeld checks that on SQLite a write that would wait for the one
// writer connection its own call's unit of work holds fails at once with
// ErrWriterHeld, and that a detached write before the unit's first write
// commits on its own.
func TestWriterHeld(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t, "CREATE TABLE a (id TEXT PRIMARY KEY)")
	insert := func(ctx context.Context, id string) error {
		return db.InTx(ctx, func(tx *Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO a (id) VALUES ($1)", id)
			return err
		})
	}
	store := NewIdempotency(db, nil)
	k := idempotency.Key{Method: "/s/M", Key: "k"}
	var errs []error
	err := store.Do(ctx, k, func(ctx context.Context) (idempotency.Outcome, bool) {
		errs = append(errs, insert(Detach(ctx), "before")) // no unit write yet: commits on its own
		errs = append(errs, insert(ctx, "unit"))           // the unit takes the writer
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		errs = append(errs, insert(Detach(wctx), "after"))
		_, err := db.ExecContext(wctx, "INSERT INTO a (id) VALUES ('exec')")
		errs = append(errs, err)
		return idempotency.Outcome{Fingerprint: []byte("fp"), Code: codes.OK, Body: []byte("ok")}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []error{nil, nil, ErrWriterHeld, ErrWriterHeld}
	for i := range want {
		if !errors.Is(errs[i], want[i]) {
			t.Errorf("write %d: %v, want %v", i, errs[i], want[i])
		}
	}
	var ids []string
	rows, err := db.QueryContext(ctx, "SELECT id FROM a ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if strings.Join(ids, ",") != "before,unit" {
		t.Errorf("rows %v, want before and unit", ids)
	}
	// After the call the writer is free again, detached or not.
	if err := insert(Detach(ctx), "later"); err != nil {
		t.Errorf("a write after the call: %v", err)
	}
}
