package ordersvc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
)

// store is a Repository under test with the database holding its outbox.
type store struct {
	repo Repository
	db   *sql.DB
}

// openSQLite opens a fresh SQLite store in t.TempDir().
func openSQLite(t *testing.T) store {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "orders.db"))
}

// openStore opens the store of dsn, closed when t ends.
func openStore(t *testing.T, dsn string) store {
	t.Helper()
	r, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return store{repo: r, db: r.DB()}
}

// stores lists the stores the repository suite runs against: SQLite, and
// PostgreSQL (see sqltest.Postgres).
var stores = map[string]func(*testing.T) store{}

func init() {
	for name, dsn := range sqltest.DSNs() {
		stores[name] = func(t *testing.T) store { return openStore(t, dsn(t)) }
	}
}

func TestRepository(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Run("CreateGet", func(t *testing.T) { testCreateGet(t, open(t)) })
			t.Run("ListByUser", func(t *testing.T) { testListByUser(t, open(t)) })
			t.Run("UpdateStatus", func(t *testing.T) { testUpdateStatus(t, open(t)) })
			t.Run("UpdateStatusConcurrent", func(t *testing.T) { testUpdateStatusConcurrent(t, open(t)) })
			t.Run("PendingReservations", func(t *testing.T) { testPendingReservations(t, open(t)) })
			t.Run("ClaimRecoveryConcurrent", func(t *testing.T) { testClaimRecoveryConcurrent(t, open(t)) })
		})
	}
}

// create begins o's pending reservation and stores o, as CreateOrder does.
func create(ctx context.Context, r Repository, o Order, events ...proto.Message) error {
	if err := r.BeginReservation(ctx, o.ID, o.UserID, o.CreateTime, o.CreateTime.Add(time.Minute)); err != nil {
		return err
	}
	return r.Create(ctx, o, fixed(events...))
}

// fixed returns OrderEvents that are msgs whatever the order.
func fixed(msgs ...proto.Message) OrderEvents {
	return func(Order) []proto.Message { return msgs }
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)

func sampleOrder(id, user string, created time.Time) Order {
	return Order{
		ID:     id,
		UserID: user,
		Items: []Item{
			{ProductID: "p_b", ProductName: "Bolt", UnitPriceCents: 25, Quantity: 4},
			{ProductID: "p_a", ProductName: "Anvil", UnitPriceCents: 9900, Quantity: 1},
		},
		TotalCents: 10000,
		Status:     StatusPending,
		CreateTime: created,
		UpdateTime: created,
	}
}

func testCreateGet(t *testing.T, s store) {
	ctx := t.Context()
	want := sampleOrder("o_1", "u_1", t0)
	if err := create(ctx, s.repo, want, &ordersv1.OrderCreated{Order: toProto(want)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.repo.Get(ctx, "o_1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Get = %+v, want %+v", got, want)
	}
	if evs := outboxEvents(t, s.db); len(evs) != 1 || !proto.Equal(evs[0], &ordersv1.OrderCreated{Order: toProto(want)}) {
		t.Fatalf("outbox = %v, want one OrderCreated", evs)
	}

	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"get unknown", func() error { _, err := s.repo.Get(ctx, "o_x"); return err }, ErrNotFound},
		{"duplicate id", func() error {
			return create(ctx, s.repo, sampleOrder("o_1", "u_2", t0), &ordersv1.OrderCreated{})
		}, ErrAlreadyExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if n := len(outboxEvents(t, s.db)); n != 1 {
		t.Fatalf("outbox has %d events after a failed create, want 1", n)
	}
}

func testListByUser(t *testing.T, s store) {
	ctx := t.Context()
	// Seven orders of u_1, two pairs sharing a create time (ties break by id
	// desc), and as many of u_2 at the same times.
	times := []time.Duration{0, 1, 1, 2, 3, 3, 4}
	var want []string // newest first
	for i, d := range times {
		id := fmt.Sprintf("o_%02d", i)
		if err := create(ctx, s.repo, sampleOrder(id, "u_1", t0.Add(d*time.Second))); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id}, want...)
		if err := create(ctx, s.repo, sampleOrder(fmt.Sprintf("o_u2_%d", i), "u_2", t0.Add(d*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1, 3, 7, 100} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []string
			var after *Cursor
			for range 20 {
				page, err := s.repo.ListByUser(ctx, "u_1", after, limit)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range page {
					if o.UserID != "u_1" || len(o.Items) != 2 {
						t.Fatalf("listed %+v", o)
					}
					got = append(got, o.ID)
				}
				if len(page) < limit {
					break
				}
				last := page[len(page)-1]
				after = &Cursor{CreateTime: last.CreateTime, ID: last.ID}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("listed %v, want %v", got, want)
			}
		})
	}
	tests := []struct {
		user string
		want int
	}{{"u_1", 7}, {"u_2", 7}, {"u_none", 0}}
	for _, tc := range tests {
		t.Run("count "+tc.user, func(t *testing.T) {
			n, err := s.repo.CountByUser(ctx, tc.user)
			if err != nil || n != tc.want {
				t.Fatalf("CountByUser = %d, %v, want %d", n, err, tc.want)
			}
		})
	}
}

func testUpdateStatus(t *testing.T, s store) {
	ctx := t.Context()
	if err := create(ctx, s.repo, sampleOrder("o_1", "u_1", t0)); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Minute)
	ev := &ordersv1.OrderStatusChanged{OrderId: "o_1"}
	tests := []struct {
		name       string
		id         string
		from, to   Status
		wantErr    error
		wantStatus Status
	}{
		{"pending to confirmed", "o_1", StatusPending, StatusConfirmed, nil, StatusConfirmed},
		{"stale from", "o_1", StatusPending, StatusCancelled, ErrStatusConflict, StatusConfirmed},
		{"unknown order", "o_x", StatusPending, StatusConfirmed, ErrNotFound, StatusConfirmed},
		{"confirmed to shipped", "o_1", StatusConfirmed, StatusShipped, nil, StatusShipped},
	}
	wantEvents := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := s.repo.UpdateStatus(ctx, tc.id, tc.from, tc.to, later, fixed(ev))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				wantEvents++
				if o.Status != tc.to || !o.UpdateTime.Equal(later) || !o.CreateTime.Equal(t0) || len(o.Items) != 2 {
					t.Fatalf("returned %+v", o)
				}
			}
			stored, err := s.repo.Get(ctx, "o_1")
			if err != nil || stored.Status != tc.wantStatus {
				t.Fatalf("stored status = %v, %v, want %v", stored.Status, err, tc.wantStatus)
			}
			if n := len(outboxEvents(t, s.db)); n != wantEvents {
				t.Fatalf("outbox has %d events, want %d", n, wantEvents)
			}
		})
	}
}

func testUpdateStatusConcurrent(t *testing.T, s store) {
	ctx := t.Context()
	if err := create(ctx, s.repo, sampleOrder("o_1", "u_1", t0)); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.repo.UpdateStatus(ctx, "o_1", StatusPending, StatusCancelled, t0, fixed(&ordersv1.OrderStatusChanged{OrderId: "o_1"}))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrStatusConflict):
			t.Errorf("UpdateStatus = %v, want nil or ErrStatusConflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent updates won, want 1", won)
	}
	if got := len(outboxEvents(t, s.db)); got != 1 {
		t.Fatalf("outbox has %d events, want 1", got)
	}
}

// outboxEvents returns the decoded events of db's outbox, oldest first.
func outboxEvents(t *testing.T, db *sql.DB) []proto.Message {
	t.Helper()
	rows, err := db.QueryContext(context.WithoutCancel(t.Context()), `SELECT event_type, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var evs []proto.Message
	for rows.Next() {
		var (
			typ     string
			payload []byte
		)
		if err := rows.Scan(&typ, &payload); err != nil {
			t.Fatal(err)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ))
		if err != nil {
			t.Fatal(err)
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(payload, m); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

func testPendingReservations(t *testing.T, s store) {
	ctx := t.Context()
	due := func(at time.Time) []string {
		t.Helper()
		ids, err := s.repo.DueReservations(ctx, at, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if err := s.repo.BeginReservation(ctx, "o_a", "u_1", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.repo.BeginReservation(ctx, "o_b", "u_1", t0, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := due(t0.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("due at the recover time = %v, want none (strictly before)", got)
	}
	if got := due(t0.Add(3 * time.Minute)); !reflect.DeepEqual(got, []string{"o_a", "o_b"}) {
		t.Fatalf("due = %v, want o_a, o_b", got)
	}
	// A retry moves the recover time on.
	if err := s.repo.BeginReservation(ctx, "o_a", "u_1", t0.Add(time.Second), t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := due(t0.Add(3 * time.Minute)); !reflect.DeepEqual(got, []string{"o_b"}) {
		t.Fatalf("due after the retry = %v, want o_b", got)
	}
	if c, err := s.repo.ClaimRecovery(ctx, "o_a", t0.Add(3*time.Minute), t0.Add(4*time.Minute)); err != nil || c != ClaimLost {
		t.Fatalf("claim not due = %v, %v; want ClaimLost", c, err)
	}
	if c, err := s.repo.ClaimRecovery(ctx, "o_missing", t0.Add(time.Hour), t0.Add(time.Hour)); err != nil || c != ClaimLost {
		t.Fatalf("claim missing = %v, %v; want ClaimLost", c, err)
	}

	// Claimed for release: retries and the order itself are refused.
	now := t0.Add(3 * time.Minute)
	if c, err := s.repo.ClaimRecovery(ctx, "o_b", now, now.Add(time.Minute)); err != nil || c != ClaimRelease {
		t.Fatalf("claim = %v, %v; want ClaimRelease", c, err)
	}
	if err := s.repo.BeginReservation(ctx, "o_b", "u_1", now, now.Add(time.Minute)); !errors.Is(err, ErrRecovering) {
		t.Fatalf("begin while releasing = %v, want ErrRecovering", err)
	}
	if err := s.repo.Create(ctx, sampleOrder("o_b", "u_1", now), fixed(&ordersv1.OrderCreated{})); !errors.Is(err, ErrRecovering) {
		t.Fatalf("create while releasing = %v, want ErrRecovering", err)
	}
	if _, err := s.repo.Get(ctx, "o_b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused order stored: %v", err)
	}
	if n := len(outboxEvents(t, s.db)); n != 0 {
		t.Fatalf("outbox rows = %d after a refused create", n)
	}
	// The lease: due again once it ends, claimable again.
	if got := due(now.Add(30 * time.Second)); len(got) != 0 {
		t.Fatalf("due within the lease = %v", got)
	}
	if got := due(now.Add(2 * time.Minute)); !reflect.DeepEqual(got, []string{"o_b"}) {
		t.Fatalf("due after the lease = %v, want o_b", got)
	}
	if err := s.repo.FinishRecovery(ctx, "o_b"); err != nil {
		t.Fatal(err)
	}
	// Without its pending reservation an order cannot be stored.
	if err := s.repo.Create(ctx, sampleOrder("o_b", "u_1", now), nil); !errors.Is(err, ErrRecovering) {
		t.Fatalf("create after the release = %v, want ErrRecovering", err)
	}
	// FinishRecovery leaves a pending reservation that is not releasing.
	if err := s.repo.FinishRecovery(ctx, "o_a"); err != nil {
		t.Fatal(err)
	}
	// Storing the order deletes its pending reservation.
	if err := s.repo.Create(ctx, sampleOrder("o_a", "u_1", now), nil); err != nil {
		t.Fatal(err)
	}
	if got := due(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("due after storing = %v, want none", got)
	}
	// A leftover pending record of a stored order is forgotten, not
	// released.
	if err := s.repo.BeginReservation(ctx, "o_a", "u_1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if c, err := s.repo.ClaimRecovery(ctx, "o_a", t0.Add(time.Hour), t0.Add(2*time.Hour)); err != nil || c != ClaimOrderStored {
		t.Fatalf("claim of a stored order = %v, %v; want ClaimOrderStored", c, err)
	}
	if got := due(t0.Add(24 * time.Hour)); len(got) != 0 {
		t.Fatalf("due after ClaimOrderStored = %v, want none", got)
	}
}

// Sweepers of several instances race for the same pending reservation:
// exactly one wins it.
func testClaimRecoveryConcurrent(t *testing.T, s store) {
	ctx := t.Context()
	if err := s.repo.BeginReservation(ctx, "o_race", "u_1", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Minute)
	var (
		wg   sync.WaitGroup
		wins atomic.Int32
	)
	for range 8 {
		wg.Go(func() {
			c, err := s.repo.ClaimRecovery(ctx, "o_race", now, now.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if c == ClaimRelease {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d sweepers won the claim, want exactly 1", n)
	}
}
