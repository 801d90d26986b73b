package outbox_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
)

func TestRelayPublishesInOrderAndRetries(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "o.db"), fstest.MapFS{"001.sql": {Data: []byte(outbox.Schema + ";\n")}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, v := range []string{"a", "b", "c"} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Add(ctx, tx, wrapperspb.String(v)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// A rolled-back event is never published.
	tx, _ := db.BeginTx(ctx, nil)
	_ = outbox.Add(ctx, tx, wrapperspb.String("rolled back"))
	_ = tx.Rollback()

	var mu sync.Mutex
	var got []string
	fails := 2
	publish := func(ctx context.Context, ev proto.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("broker down")
		}
		got = append(got, ev.(*wrapperspb.StringValue).GetValue())
		return nil
	}
	r := outbox.NewRelay(db, publish, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("published %v, want [a b c]", got)
	}
	var left int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM outbox").Scan(&left); err != nil || left != 0 {
		t.Fatalf("outbox rows left = %d, %v", left, err)
	}
}
