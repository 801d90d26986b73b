package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// TestIdempotencyUnitOfWork checks, on each database, that a call's writes
// commit together with its outcome or not at all, and that of concurrent
// runs with one key exactly one commits.
func TestIdempotencyUnitOfWork(t *testing.T) {
	migs := fstest.MapFS{"001.sql": {Data: []byte("CREATE TABLE counter (id TEXT PRIMARY KEY, n BIGINT NOT NULL);\n")}}
	for name, newDSN := range sqltest.DSNs() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			db, err := Open(ctx, newDSN(t), migs)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(ctx, "INSERT INTO counter (id, n) VALUES ('c', 0)"); err != nil {
				t.Fatal(err)
			}
			commits := 0
			store := NewIdempotency(db, func() { commits++ })
			counter := func() int64 {
				t.Helper()
				var n int64
				if err := db.QueryRowContext(ctx, "SELECT n FROM counter WHERE id = 'c'").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			add := func(ctx context.Context, delta int64) error {
				return db.InTx(ctx, func(tx *Tx) error {
					_, err := tx.ExecContext(ctx, "UPDATE counter SET n = n + $1 WHERE id = 'c'", delta)
					return err
				})
			}
			ok := idempotency.Outcome{Fingerprint: []byte("fp"), Code: codes.OK, Body: []byte("resp")}

			t.Run("writes commit with the outcome", func(t *testing.T) {
				before := counter()
				k := idempotency.Key{Scope: "u1", Method: "/s/M", Key: "k1"}
				err := store.Do(ctx, k, func(ctx context.Context) (idempotency.Outcome, bool) {
					if err := add(ctx, 1); err != nil {
						t.Fatal(err)
					}
					if err := add(ctx, 10); err != nil { // a second write joins the same unit
						t.Fatal(err)
					}
					// Not visible outside the unit before it commits.
					if got := counter(); got != before && db.Dialect == Postgres {
						t.Errorf("uncommitted write visible: %d", got)
					}
					return ok, true
				})
				if err != nil {
					t.Fatal(err)
				}
				if got := counter(); got != before+11 {
					t.Errorf("counter = %d, want %d", got, before+11)
				}
				out, found, err := store.Lookup(ctx, k)
				if err != nil || !found || string(out.Body) != "resp" || out.Code != codes.OK || string(out.Fingerprint) != "fp" {
					t.Errorf("Lookup = %+v, %v, %v", out, found, err)
				}
				if other, found, _ := store.Lookup(ctx, idempotency.Key{Scope: "u2", Method: "/s/M", Key: "k1"}); found {
					t.Errorf("another scope found %+v", other)
				}
			})

			t.Run("an outcome not recorded rolls the writes back", func(t *testing.T) {
				before := counter()
				k := idempotency.Key{Method: "/s/M", Key: "k2"}
				err := store.Do(ctx, k, func(ctx context.Context) (idempotency.Outcome, bool) {
					_ = add(ctx, 1)
					return idempotency.Outcome{}, false
				})
				if err != nil || counter() != before {
					t.Errorf("Do = %v, counter %d, want nil and %d", err, counter(), before)
				}
				if _, found, _ := store.Lookup(ctx, k); found {
					t.Error("an outcome was recorded")
				}
			})

			t.Run("a failed write undoes only itself", func(t *testing.T) {
				before := counter()
				err := store.Do(ctx, idempotency.Key{Method: "/s/M", Key: "k3"}, func(ctx context.Context) (idempotency.Outcome, bool) {
					_ = add(ctx, 1)
					boom := errors.New("boom")
					err := db.InTx(ctx, func(tx *Tx) error {
						if _, err := tx.ExecContext(ctx, "UPDATE counter SET n = n + 100 WHERE id = 'c'"); err != nil {
							return err
						}
						return boom
					})
					if !errors.Is(err, boom) {
						t.Errorf("InTx = %v, want boom", err)
					}
					// A statement that fails in PostgreSQL must not spoil the
					// unit either.
					_ = db.InTx(ctx, func(tx *Tx) error {
						_, err := tx.ExecContext(ctx, "INSERT INTO counter (id, n) VALUES ('c', 0)")
						return err
					})
					_ = add(ctx, 2)
					return ok, true
				})
				if err != nil || counter() != before+3 {
					t.Errorf("Do = %v, counter %d, want nil and %d", err, counter(), before+3)
				}
			})

			t.Run("Detach commits at once", func(t *testing.T) {
				before := counter()
				_ = store.Do(ctx, idempotency.Key{Method: "/s/M", Key: "k4"}, func(ctx context.Context) (idempotency.Outcome, bool) {
					if err := add(Detach(ctx), 5); err != nil {
						t.Fatal(err)
					}
					return idempotency.Outcome{}, false // rolls back the unit, not the detached write
				})
				if got := counter(); got != before+5 {
					t.Errorf("counter = %d, want %d", got, before+5)
				}
			})

			t.Run("the unit outlives the context of the write that began it", func(t *testing.T) {
				before := counter()
				err := store.Do(ctx, idempotency.Key{Method: "/s/M", Key: "k5"}, func(ctx context.Context) (idempotency.Outcome, bool) {
					wctx, cancel := context.WithTimeout(ctx, time.Minute)
					err := add(wctx, 1)
					cancel()
					if err != nil {
						t.Fatal(err)
					}
					return ok, true
				})
				if err != nil || counter() != before+1 {
					t.Errorf("Do = %v, counter %d, want nil and %d", err, counter(), before+1)
				}
			})

			t.Run("a write after the unit ended runs on its own", func(t *testing.T) {
				before := counter()
				var late context.Context
				_ = store.Do(ctx, idempotency.Key{Method: "/s/M", Key: "k6"}, func(ctx context.Context) (idempotency.Outcome, bool) {
					late = ctx
					return ok, true
				})
				if err := add(late, 7); err != nil {
					t.Fatal(err)
				}
				if got := counter(); got != before+7 {
					t.Errorf("counter = %d, want %d: the late write was lost", got, before+7)
				}
			})

			t.Run("concurrent runs of one key commit once", func(t *testing.T) {
				before, commitsBefore := counter(), commits
				k := idempotency.Key{Scope: "u1", Method: "/s/M", Key: "race"}
				const runs = 8
				errs := make([]error, runs)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range runs {
					wg.Go(func() {
						<-start
						errs[i] = store.Do(ctx, k, func(ctx context.Context) (idempotency.Outcome, bool) {
							if err := add(ctx, 1); err != nil {
								t.Error(err)
							}
							time.Sleep(10 * time.Millisecond) // overlap the runs
							return ok, true
						})
					})
				}
				close(start)
				wg.Wait()
				won := 0
				for _, err := range errs {
					switch {
					case err == nil:
						won++
					case !errors.Is(err, idempotency.ErrConflict):
						t.Errorf("Do = %v, want nil or ErrConflict", err)
					}
				}
				if won != 1 || counter() != before+1 || commits != commitsBefore+1 {
					t.Errorf("%d runs committed, counter +%d, %d commit hooks: want 1, +1, 1", won, counter()-before, commits-commitsBefore)
				}
			})

			t.Run("Expire", func(t *testing.T) {
				store.now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
				k := idempotency.Key{Method: "/s/M", Key: "old"}
				if err := store.Do(ctx, k, func(context.Context) (idempotency.Outcome, bool) { return ok, true }); err != nil {
					t.Fatal(err)
				}
				store.now = time.Now
				n, err := store.Expire(ctx, time.Now().Add(-24*time.Hour))
				if err != nil || n != 1 {
					t.Errorf("Expire = %d, %v, want 1", n, err)
				}
				if _, found, _ := store.Lookup(ctx, k); found {
					t.Error("expired key still found")
				}
				if _, found, _ := store.Lookup(ctx, idempotency.Key{Scope: "u1", Method: "/s/M", Key: "k1"}); !found {
					t.Error("a fresh key was expired")
				}
				// More than one batch.
				const many = 2*expireBatch + 7
				err = db.InTx(ctx, func(tx *Tx) error {
					for i := range many {
						if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (scope, method, idem_key, fingerprint, code, body, create_time)
							VALUES ('', '/s/M', $1, $2, 0, $2, 1)`, fmt.Sprint("old-", i), []byte("x")); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if n, err := store.Expire(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != many {
					t.Errorf("Expire = %d, %v, want %d", n, err, many)
				}
			})
		})
	}
}
