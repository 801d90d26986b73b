package idemtest_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

const adjust = "/shop.products.v1.ProductService/AdjustStock"

// TestInterceptorPaths drives the interceptor directly, on each database:
// two interceptors on one database stand for two instances of a service.
func TestInterceptorPaths(t *testing.T) {
	migs := fstest.MapFS{"001.sql": {Data: []byte("CREATE TABLE counter (n BIGINT NOT NULL);\nINSERT INTO counter (n) VALUES (0);\n")}}
	for name, newDSN := range sqltest.DSNs() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			db, err := sqlstore.Open(ctx, newDSN(t), migs)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var runs atomic.Int64
			// handler adds delta to the counter in the call's unit, then
			// answers with its new value, or with fail when set.
			handler := func(fail error) grpc.UnaryHandler {
				return func(ctx context.Context, req any) (any, error) {
					runs.Add(1)
					var n int64
					err := db.InTx(ctx, func(tx *sqlstore.Tx) error {
						return tx.QueryRowContext(ctx, "UPDATE counter SET n = n + $1 RETURNING n", req.(*productsv1.AdjustStockRequest).GetDelta()).Scan(&n)
					})
					if err != nil {
						return nil, err
					}
					if fail != nil {
						return nil, fail
					}
					return &productsv1.AdjustStockResponse{Product: &productsv1.Product{Stock: n}}, nil
				}
			}
			counter := func() int64 {
				var n int64
				if err := db.QueryRowContext(ctx, "SELECT n FROM counter").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			call := func(ic grpc.UnaryServerInterceptor, key string, delta int64, h grpc.UnaryHandler) (*productsv1.AdjustStockResponse, error) {
				kctx := metadata.NewIncomingContext(ctx, metadata.Pairs(idempotency.MetadataKey, key))
				resp, err := ic(kctx, &productsv1.AdjustStockRequest{Id: "p", Delta: delta}, &grpc.UnaryServerInfo{FullMethod: adjust}, h)
				r, _ := resp.(*productsv1.AdjustStockResponse)
				return r, err
			}
			store := sqlstore.NewIdempotency(db, nil)
			one, two := idempotency.UnaryServerInterceptor(store), idempotency.UnaryServerInterceptor(store)

			t.Run("two instances, one key, one effect", func(t *testing.T) {
				before, runsBefore := counter(), runs.Load()
				var wg sync.WaitGroup
				answers := make([]int64, 8)
				for i := range answers {
					wg.Go(func() {
						ic := one
						if i%2 == 1 {
							ic = two
						}
						resp, err := call(ic, "race", 1, handler(nil))
						if err != nil {
							t.Errorf("call %d: %v", i, err)
							return
						}
						answers[i] = resp.GetProduct().GetStock()
					})
				}
				wg.Wait()
				if counter() != before+1 {
					t.Errorf("counter +%d, want +1", counter()-before)
				}
				for i, a := range answers {
					if a != before+1 {
						t.Errorf("answer %d = %d, want %d", i, a, before+1)
					}
				}
				// Each instance ran the handler at most once.
				if n := runs.Load() - runsBefore; n < 1 || n > 2 {
					t.Errorf("handler ran %d times, want 1 or 2 (once per instance at most)", n)
				}
			})

			t.Run("an error that is not an answer rolls back and leaves the key free", func(t *testing.T) {
				before, runsBefore := counter(), runs.Load()
				_, err := call(one, "flaky", 5, handler(status.Error(codes.Unavailable, "try again")))
				if status.Code(err) != codes.Unavailable || counter() != before {
					t.Fatalf("first call: %v, counter +%d; want Unavailable and no change", err, counter()-before)
				}
				resp, err := call(one, "flaky", 5, handler(nil))
				if err != nil || resp.GetProduct().GetStock() != before+5 || runs.Load()-runsBefore != 2 {
					t.Fatalf("retry: %v %v after %d runs; want the effect once, from a second run", resp, err, runs.Load()-runsBefore)
				}
			})

			t.Run("a recorded error commits the writes made before it", func(t *testing.T) {
				before := counter()
				_, err := call(one, "refused", 2, handler(status.Error(codes.FailedPrecondition, "no")))
				if status.Code(err) != codes.FailedPrecondition || counter() != before+2 {
					t.Fatalf("call: %v, counter +%d; want FailedPrecondition, +2", err, counter()-before)
				}
				_, err = call(two, "refused", 2, handler(nil))
				if status.Code(err) != codes.FailedPrecondition || counter() != before+2 {
					t.Fatalf("repeat: %v, counter +%d; want the recorded FailedPrecondition, no change", err, counter()-before)
				}
			})

			t.Run("a store that is down answers Unavailable and runs nothing", func(t *testing.T) {
				down, err := sqlstore.Open(ctx, newDSN(t), migs)
				if err != nil {
					t.Fatal(err)
				}
				down.Close()
				runsBefore := runs.Load()
				_, err = call(idempotency.UnaryServerInterceptor(sqlstore.NewIdempotency(down, nil)), "down", 1, handler(nil))
				if status.Code(err) != codes.Unavailable || runs.Load() != runsBefore {
					t.Fatalf("call: %v after %d runs; want Unavailable, none", err, runs.Load()-runsBefore)
				}
			})
		})
	}
}
