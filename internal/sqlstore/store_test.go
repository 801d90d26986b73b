package sqlstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
)

func TestCursorTokenRoundTrip(t *testing.T) {
	tests := []Cursor{
		{CreateTime: time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC), ID: "u_0123456789abcdef"},
		{CreateTime: time.UnixMicro(0).UTC(), ID: "id:with:colons"},
	}
	for _, c := range tests {
		t.Run(c.ID, func(t *testing.T) {
			got, err := ParseCursor(c.Token())
			if err != nil || got != c {
				t.Fatalf("round trip of %+v = %+v, %v", c, got, err)
			}
		})
	}
}

func TestParseCursorRejects(t *testing.T) {
	tests := []struct{ name, token string }{
		{"not base64", "!!"},
		{"without id", "MTIz"},      // "123"
		{"bad time", "eDpvXzE"},     // "x:o_1"
		{"negative time", "LTE6eA"}, // "-1:x"
		{"empty id", "MTIzOg"},      // "123:"
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := ParseCursor(tc.token); err == nil {
				t.Fatalf("ParseCursor(%q) = %+v, want an error", tc.token, c)
			}
		})
	}
}

// A unit of work commits its rows and its outbox events together, or
// neither; Lock makes read-then-write steps run one at a time.
func TestInTx(t *testing.T) {
	migs := fstest.MapFS{"001.sql": {Data: []byte("CREATE TABLE a (k TEXT PRIMARY KEY);\n" + outbox.Schema + ";\n")}}
	for name, newDSN := range sqltest.DSNs() {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			db, err := Open(ctx, newDSN(t), migs)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			count := func(table string) int {
				t.Helper()
				var n int
				if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			write := func(k string, fail error) error {
				return db.InTx(ctx, func(tx *Tx) error {
					if _, err := tx.ExecContext(ctx, "INSERT INTO a (k) VALUES ($1)", k); err != nil {
						return err
					}
					if err := tx.AddEvents(ctx, wrapperspb.String(k+"-1"), wrapperspb.String(k+"-2")); err != nil {
						return err
					}
					return fail
				})
			}
			if err := write("x", nil); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			if err := write("y", boom); err != boom {
				t.Fatalf("InTx = %v, want fn's error as is", err)
			}
			if a, o := count("a"), count("outbox"); a != 1 || o != 2 {
				t.Fatalf("rows %d, events %d; want 1 and 2 (the failed unit of work left nothing)", a, o)
			}

			// Each of several concurrent steps inserts only when the table
			// is empty: under the lock exactly one does.
			if _, err := db.ExecContext(ctx, "DELETE FROM a"); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					err := db.InTx(ctx, func(tx *Tx) error {
						if err := tx.Lock(ctx, "test.seed"); err != nil {
							return err
						}
						var n int
						if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM a").Scan(&n); err != nil || n > 0 {
							return err
						}
						time.Sleep(20 * time.Millisecond)
						_, err := tx.ExecContext(ctx, "INSERT INTO a (k) VALUES ($1)", fmt.Sprint(i))
						return err
					})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if n := count("a"); n != 1 {
				t.Fatalf("%d concurrent locked steps inserted, want 1", n)
			}
		})
	}
}

func TestPageRequest(t *testing.T) {
	tok := Cursor{CreateTime: FromMicros(5), ID: "x"}.Token()
	tests := []struct {
		name     string
		size     int32
		token    string
		wantSize int
		wantID   string // "" for no cursor
		wantErr  string
	}{
		{"default size", 0, "", 10, "", ""},
		{"given size", 7, "", 7, "", ""},
		{"capped size", 500, "", 100, "", ""},
		{"negative size (refused by the rules before)", -1, "", 10, "", ""},
		{"token", 3, tok, 3, "x", ""},
		{"bad token", 3, "!!", 0, "", "malformed page_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size, after, err := PageRequest(tc.size, tc.token, 10, 100)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			id := ""
			if after != nil {
				id = after.ID
			}
			if err != nil || size != tc.wantSize || id != tc.wantID {
				t.Fatalf("= %d, %+v, %v; want %d and cursor %q", size, after, err, tc.wantSize, tc.wantID)
			}
		})
	}
}

func TestNextPage(t *testing.T) {
	cursor := func(id string) Cursor { return Cursor{CreateTime: FromMicros(1), ID: id} }
	tests := []struct {
		rows     []string
		size     int
		wantRows int
		wantNext string // id of the next page's cursor, "" for none
	}{
		{[]string{"a", "b", "c"}, 2, 2, "b"},
		{[]string{"a", "b"}, 2, 2, ""},
		{nil, 2, 0, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.rows), func(t *testing.T) {
			page, next := NextPage(tc.rows, tc.size, cursor)
			if len(page) != tc.wantRows {
				t.Fatalf("page %v, want %d rows", page, tc.wantRows)
			}
			want := ""
			if tc.wantNext != "" {
				want = cursor(tc.wantNext).Token()
			}
			if next != want {
				t.Fatalf("next token %q, want %q", next, want)
			}
		})
	}
}
