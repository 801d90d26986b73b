package productsvc

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

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
	return openStore(t, filepath.Join(t.TempDir(), "products.db"))
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

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testProduct(id, sku string, price, stock int64) Product {
	return Product{ID: id, SKU: sku, Name: "Name " + sku, Description: "desc", Category: "Cat",
		PriceCents: price, Stock: stock, CreateTime: t0, UpdateTime: t0}
}

// outboxCount returns how many outbox rows there are.
func outboxCount(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// marker is an events callback adding one recognisable event.
func marker(Product) []proto.Message { return []proto.Message{wrapperspb.String("ev")} }

func TestRepository(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Run("products", func(t *testing.T) { testRepoProducts(t, open(t)) })
			t.Run("stock", func(t *testing.T) { testRepoStock(t, open(t)) })
			t.Run("reservations", func(t *testing.T) { testRepoReservations(t, open(t)) })
			t.Run("seed", func(t *testing.T) { testRepoSeed(t, open(t)) })
		})
	}
}

func testRepoProducts(t *testing.T, s store) {
	ctx := t.Context()
	p := testProduct("p1", "Sku-1", 100, 5)
	if err := s.repo.CreateProduct(ctx, p, marker); err != nil {
		t.Fatal(err)
	}
	if got, err := s.repo.GetProduct(ctx, "p1"); err != nil || got != p {
		t.Fatalf("GetProduct = %+v, %v; want %+v", got, err, p)
	}
	if err := s.repo.CreateProduct(ctx, testProduct("p2", "SKU-1", 1, 1), marker); !errors.Is(err, ErrSKUTaken) {
		t.Fatalf("duplicate sku (other case): %v, want ErrSKUTaken", err)
	}
	if n := outboxCount(t, s.db); n != 1 {
		t.Fatalf("outbox rows = %d, want 1 (failed create adds none)", n)
	}
	name, price := "New name", int64(250)
	up, err := s.repo.UpdateProduct(ctx, "p1", ProductPatch{Name: &name, PriceCents: &price, UpdateTime: t0.Add(time.Second)}, marker)
	if err != nil || up.Name != name || up.PriceCents != price || up.Description != p.Description || !up.UpdateTime.Equal(t0.Add(time.Second)) {
		t.Fatalf("UpdateProduct = %+v, %v", up, err)
	}
	if _, err := s.repo.UpdateProduct(ctx, "nope", ProductPatch{Name: &name}, marker); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update unknown: %v", err)
	}
	before, err := s.repo.DeleteProduct(ctx, "p1", t0, marker)
	if err != nil || before.Name != name {
		t.Fatalf("DeleteProduct = %+v, %v", before, err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"get", func() error { _, err := s.repo.GetProduct(ctx, "p1"); return err }()},
		{"update", func() error { _, err := s.repo.UpdateProduct(ctx, "p1", ProductPatch{Name: &name}, nil); return err }()},
		{"delete", func() error { _, err := s.repo.DeleteProduct(ctx, "p1", t0, nil); return err }()},
		{"adjust", func() error { _, err := s.repo.AdjustStock(ctx, "p1", 1, t0, nil); return err }()},
	} {
		t.Run("deleted "+tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", tc.err)
			}
		})
	}
	// The SKU of a deleted product is free again.
	if err := s.repo.CreateProduct(ctx, testProduct("p3", "sku-1", 1, 1), nil); err != nil {
		t.Fatalf("reuse sku of deleted product: %v", err)
	}
	if n := outboxCount(t, s.db); n != 3 {
		t.Fatalf("outbox rows = %d, want 3", n)
	}
}

func testRepoStock(t *testing.T, s store) {
	ctx := t.Context()
	if err := s.repo.CreateProduct(ctx, testProduct("p1", "S1", 100, 5), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		delta int64
		want  int64
		err   error
	}{
		{"add", 3, 8, nil},
		{"remove all", -8, 0, nil},
		{"below zero", -1, 0, ErrInsufficientStock},
		{"above max", MaxStock + 1, 0, ErrStockLimit},
		{"to max", MaxStock, MaxStock, nil},
		{"over max", 1, 0, ErrStockLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.repo.AdjustStock(ctx, "p1", tc.delta, t0, marker)
			if !errors.Is(err, tc.err) {
				t.Fatalf("AdjustStock(%d) = %v, want %v", tc.delta, err, tc.err)
			}
			if err == nil && p.Stock != tc.want {
				t.Fatalf("stock = %d, want %d", p.Stock, tc.want)
			}
		})
	}
	if n := outboxCount(t, s.db); n != 3 {
		t.Fatalf("outbox rows = %d, want 3 (one per successful adjustment)", n)
	}
}

func testRepoReservations(t *testing.T, s store) {
	ctx := t.Context()
	for _, p := range []Product{testProduct("a", "A", 100, 5), testProduct("b", "B", 200, 1)} {
		if err := s.repo.CreateProduct(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	var gotChanges []StockChange
	events := func(m StockMove) []proto.Message {
		gotChanges = m.Changes
		return []proto.Message{wrapperspb.String(m.Reservation.ID)}
	}
	stock := func(id string) int64 {
		t.Helper()
		var n int64
		if err := s.db.QueryRowContext(ctx, `SELECT stock FROM products WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Short on the second item: nothing changes.
	_, _, err := s.repo.Reserve(ctx, "r0", []StockRequest{{"a", 2}, {"b", 2}}, t0, events)
	var ie *ItemError
	if !errors.As(err, &ie) || !errors.Is(err, ErrInsufficientStock) || ie.ProductID != "b" || ie.Available != 1 {
		t.Fatalf("short reserve: %v", err)
	}
	_, _, err = s.repo.Reserve(ctx, "r0", []StockRequest{{"a", 1}, {"zz", 1}}, t0, events)
	if !errors.As(err, &ie) || !errors.Is(err, ErrNotFound) || ie.ProductID != "zz" {
		t.Fatalf("unknown product: %v", err)
	}
	if stock("a") != 5 || stock("b") != 1 || outboxCount(t, s.db) != 0 {
		t.Fatalf("failed reservations changed something: a=%d b=%d", stock("a"), stock("b"))
	}

	res, replayed, err := s.repo.Reserve(ctx, "r1", []StockRequest{{"b", 1}, {"a", 2}}, t0, events)
	if err != nil || replayed {
		t.Fatalf("Reserve = %v, replayed %v", err, replayed)
	}
	want := []ReservedItem{{"b", "Name B", 200, 1}, {"a", "Name A", 100, 2}}
	if fmt.Sprint(res.Items) != fmt.Sprint(want) {
		t.Fatalf("items = %+v, want %+v", res.Items, want)
	}
	if fmt.Sprint(gotChanges) != fmt.Sprint([]StockChange{{"b", -1, 0, false}, {"a", -2, 3, false}}) {
		t.Fatalf("changes = %+v", gotChanges)
	}
	// Price changes after the reservation do not change the stored result.
	price := int64(999)
	if _, err := s.repo.UpdateProduct(ctx, "a", ProductPatch{PriceCents: &price, UpdateTime: t0}, nil); err != nil {
		t.Fatal(err)
	}
	again, replayed, err := s.repo.Reserve(ctx, "r1", []StockRequest{{"b", 1}, {"a", 2}}, t0, events)
	if err != nil || !replayed || fmt.Sprint(again.Items) != fmt.Sprint(want) {
		t.Fatalf("replay = %+v, %v, %v", again.Items, replayed, err)
	}
	if _, _, err := s.repo.Reserve(ctx, "r1", []StockRequest{{"a", 1}}, t0, events); !errors.Is(err, ErrReservationConflict) {
		t.Fatalf("same id, other items: %v", err)
	}
	if stock("a") != 3 || stock("b") != 0 || outboxCount(t, s.db) != 1 {
		t.Fatalf("after reserve: a=%d b=%d outbox=%d", stock("a"), stock("b"), outboxCount(t, s.db))
	}

	// A deleted product still gets its stock back; its change is flagged.
	if _, err := s.repo.DeleteProduct(ctx, "b", t0, nil); err != nil {
		t.Fatal(err)
	}
	for i, wantReleased := range []bool{true, false} {
		ok, err := s.repo.Release(ctx, "r1", t0, events)
		if err != nil || ok != wantReleased {
			t.Fatalf("Release #%d = %v, %v; want %v", i, ok, err, wantReleased)
		}
	}
	if stock("a") != 5 || stock("b") != 1 {
		t.Fatalf("after release: a=%d b=%d", stock("a"), stock("b"))
	}
	if fmt.Sprint(gotChanges) != fmt.Sprint([]StockChange{{"b", 1, 1, true}, {"a", 2, 5, false}}) {
		t.Fatalf("release changes = %+v", gotChanges)
	}
	// A released reservation never holds stock again, even when its
	// reservation is repeated exactly.
	if _, _, err := s.repo.Reserve(ctx, "r1", []StockRequest{{"b", 1}, {"a", 2}}, t0, events); !errors.Is(err, ErrReservationReleased) {
		t.Fatalf("replay after release: %v, want ErrReservationReleased", err)
	}
	if stock("a") != 5 || stock("b") != 1 {
		t.Fatalf("after refused replay: a=%d b=%d", stock("a"), stock("b"))
	}

	// Releasing an unknown id leaves a marker that refuses a late reservation.
	if ok, err := s.repo.Release(ctx, "r2", t0, events); err != nil || ok {
		t.Fatalf("release unknown = %v, %v", ok, err)
	}
	if _, _, err := s.repo.Reserve(ctx, "r2", []StockRequest{{"a", 1}}, t0, events); !errors.Is(err, ErrReservationReleased) {
		t.Fatalf("reserve after release: %v", err)
	}
	if stock("a") != 5 {
		t.Fatalf("a = %d after refused late reservation", stock("a"))
	}
	if n := outboxCount(t, s.db); n != 2 {
		t.Fatalf("outbox rows = %d, want 2", n)
	}
}

func testRepoSeed(t *testing.T, s store) {
	ctx := t.Context()
	ps := []Product{testProduct("a", "A", 1, 1), testProduct("b", "B", 2, 2)}
	for i, want := range []bool{true, false} {
		got, err := s.repo.SeedProducts(ctx, ps, marker)
		if err != nil || got != want {
			t.Fatalf("SeedProducts #%d = %v, %v; want %v", i, got, err, want)
		}
	}
	if n := outboxCount(t, s.db); n != 2 {
		t.Fatalf("outbox rows = %d, want 2", n)
	}
}

func TestListProductsRepository(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := t.Context()
			for i, p := range []Product{
				{ID: "p1", SKU: "1", Name: "banana", Description: "yellow 100% fruit", Category: "Fruit", PriceCents: 50, Stock: 0},
				{ID: "p2", SKU: "2", Name: "Apple", Description: "red_fruit", Category: "fruit", PriceCents: 80, Stock: 3},
				{ID: "p3", SKU: "3", Name: "cherry", Description: "dark", Category: "FRUIT", PriceCents: 80, Stock: 1},
				{ID: "p4", SKU: "4", Name: "Ähre", Description: "grain", Category: "Grain", PriceCents: 10, Stock: 9},
			} {
				p.CreateTime = t0.Add(time.Duration(i) * time.Second)
				p.UpdateTime = p.CreateTime
				if err := s.repo.CreateProduct(ctx, p, nil); err != nil {
					t.Fatal(err)
				}
			}
			i64 := func(v int64) *int64 { return &v }
			tests := []struct {
				name string
				q    ListQuery
				want string
			}{
				{"all by name", ListQuery{}, "[p2 p1 p3 p4]"},
				{"by name desc", ListQuery{Desc: true}, "[p4 p3 p1 p2]"},
				{"by price, id breaks ties", ListQuery{Sort: SortPrice}, "[p4 p1 p2 p3]"},
				{"by price desc", ListQuery{Sort: SortPrice, Desc: true}, "[p3 p2 p1 p4]"},
				{"by create time", ListQuery{Sort: SortCreateTime}, "[p1 p2 p3 p4]"},
				{"percent is literal", ListQuery{Text: "100%"}, "[p1]"},
				{"percent alone", ListQuery{Text: "%"}, "[p1]"},
				{"underscore is literal", ListQuery{Text: "d_f"}, "[p2]"},
				{"underscore alone", ListQuery{Text: "_"}, "[p2]"},
				{"case-insensitive text", ListQuery{Text: "APP"}, "[p2]"},
				{"non-ASCII case folding", ListQuery{Text: "äH"}, "[p4]"},
				{"description match", ListQuery{Text: "FRUIT"}, "[p2 p1]"},
				{"category ignores case", ListQuery{Category: "fRuIt"}, "[p2 p1 p3]"},
				{"price range", ListQuery{MinPriceCents: i64(50), MaxPriceCents: i64(79)}, "[p1]"},
				{"in stock", ListQuery{InStock: true, Category: "fruit"}, "[p2 p3]"},
				{"after cursor", ListQuery{Sort: SortPrice, After: &Cursor{PriceCents: 80, ID: "p2"}}, "[p3]"},
				{"after cursor desc", ListQuery{Sort: SortPrice, Desc: true, After: &Cursor{PriceCents: 80, ID: "p3"}}, "[p2 p1 p4]"},
				{"after name cursor", ListQuery{After: &Cursor{Name: "BANANA", ID: "p1"}}, "[p3 p4]"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.q.Limit = 10
					ps, err := s.repo.ListProducts(ctx, tc.q)
					if err != nil {
						t.Fatal(err)
					}
					var ids []string
					for _, p := range ps {
						ids = append(ids, p.ID)
					}
					if got := fmt.Sprint(ids); got != tc.want {
						t.Fatalf("ids = %s, want %s", got, tc.want)
					}
				})
			}
		})
	}
}
