package usersvc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// openTestRepo opens a fresh SQLite store in a temporary directory.
func openTestRepo(t *testing.T) *SQLRepository {
	t.Helper()
	return openRepo(t, filepath.Join(t.TempDir(), "users.db"))
}

// openRepo opens the store of dsn, closed when t ends.
func openRepo(t *testing.T, dsn string) *SQLRepository {
	t.Helper()
	r, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// forEachStore runs test against a fresh store of each kind the repository
// suite covers: SQLite, and PostgreSQL (see sqltest.Postgres).
func forEachStore(t *testing.T, test func(t *testing.T, r *SQLRepository)) {
	for name, dsn := range sqltest.DSNs() {
		t.Run(name, func(t *testing.T) { test(t, openRepo(t, dsn(t))) })
	}
}

func testUser(id, email string, created time.Time) User {
	return User{
		ID:              id,
		Email:           email,
		EmailNormalized: strings.ToLower(email),
		DisplayName:     "User " + id,
		Role:            auth.RoleCustomer,
		PasswordHash:    "hash-" + id,
		CreateTime:      created,
		UpdateTime:      created,
	}
}

func countRows(t *testing.T, r *SQLRepository, table string) int {
	t.Helper()
	var n int
	if err := r.DB().QueryRowContext(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrationsIncludeOutboxSchema(t *testing.T) {
	body, err := fs.ReadFile(Migrations(), "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), outbox.Schema+";\n") {
		t.Fatal("0001_init.sql does not contain outbox.Schema verbatim")
	}
	// Reopening an existing database applies nothing twice.
	path := filepath.Join(t.TempDir(), "users.db")
	for range 2 {
		r, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
}

func TestSQLRepositoryCreateGet(t *testing.T) {
	forEachStore(t, func(t *testing.T, r *SQLRepository) {
		ctx := t.Context()
		now := time.Now().UTC().Truncate(time.Microsecond)
		u := testUser("u_1", "Ann@Example.com", now)
		if err := r.Create(ctx, u, nil); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			get     func() (User, error)
			want    User
			wantErr error
		}{
			{"by id", func() (User, error) { return r.Get(ctx, "u_1") }, u, nil},
			{"by normalized email", func() (User, error) { return r.GetByEmail(ctx, "ann@example.com") }, u, nil},
			{"by unnormalized email", func() (User, error) { return r.GetByEmail(ctx, "Ann@Example.com") }, User{}, ErrNotFound},
			{"unknown id", func() (User, error) { return r.Get(ctx, "u_2") }, User{}, ErrNotFound},
			{"unknown email", func() (User, error) { return r.GetByEmail(ctx, "bob@example.com") }, User{}, ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := tc.get()
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !usersEqual(got, tc.want) {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
			})
		}
	})
}

func usersEqual(a, b User) bool {
	return a.ID == b.ID && a.Email == b.Email && a.EmailNormalized == b.EmailNormalized &&
		a.DisplayName == b.DisplayName && a.Role == b.Role && a.PasswordHash == b.PasswordHash &&
		a.TokenVersion == b.TokenVersion && a.CreateTime.Equal(b.CreateTime) && a.UpdateTime.Equal(b.UpdateTime)
}

func TestSQLRepositoryDuplicateEmail(t *testing.T) {
	forEachStore(t, func(t *testing.T, r *SQLRepository) {
		ctx := t.Context()
		now := time.Now().UTC()
		if err := r.Create(ctx, testUser("u_1", "ann@example.com", now), nil); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			email string
		}{
			{"same", "ann@example.com"},
			{"other case", "ANN@Example.COM"},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				u := testUser(fmt.Sprintf("u_dup%d", i), tc.email, now)
				// The event of a failed create must not reach the outbox.
				err := r.Create(ctx, u, func(u User) []proto.Message { return []proto.Message{wrapperspb.String("event of " + u.ID)} })
				if !errors.Is(err, ErrEmailTaken) {
					t.Fatalf("Create = %v, want ErrEmailTaken", err)
				}
			})
		}
		if n := countRows(t, r, "outbox"); n != 0 {
			t.Fatalf("outbox has %d rows after failed creates, want 0", n)
		}
		if n := countRows(t, r, "users"); n != 1 {
			t.Fatalf("users has %d rows, want 1", n)
		}
		// A duplicate id is not an email conflict.
		if err := r.Create(ctx, testUser("u_1", "other@example.com", now), nil); err == nil || errors.Is(err, ErrEmailTaken) {
			t.Fatalf("Create with duplicate id = %v, want a non-ErrEmailTaken error", err)
		}
	})
}

func TestSQLRepositoryUpdate(t *testing.T) {
	forEachStore(t, func(t *testing.T, r *SQLRepository) {
		ctx := t.Context()
		created := time.Now().UTC().Truncate(time.Microsecond)
		base := testUser("u_1", "ann@example.com", created)
		if err := r.Create(ctx, base, nil); err != nil {
			t.Fatal(err)
		}
		name, hash, admin := "Annie", "new-hash", auth.RoleAdmin
		later := created.Add(time.Second)
		tests := []struct {
			name   string
			patch  UserPatch
			modify func(*User)
		}{
			{"display name only", UserPatch{DisplayName: &name, UpdateTime: later}, func(u *User) { u.DisplayName = name }},
			// A new password or role revokes the user's tokens: the version goes up.
			{"password only", UserPatch{PasswordHash: &hash, UpdateTime: later.Add(time.Second)}, func(u *User) { u.PasswordHash = hash; u.TokenVersion++ }},
			{"role only", UserPatch{Role: &admin, UpdateTime: later.Add(2 * time.Second)}, func(u *User) { u.Role = admin; u.TokenVersion++ }},
		}
		want := base
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tc.modify(&want)
				want.UpdateTime = tc.patch.UpdateTime
				got, err := r.Update(ctx, "u_1", tc.patch, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !usersEqual(got, want) {
					t.Fatalf("Update = %+v, want %+v", got, want)
				}
				stored, err := r.Get(ctx, "u_1")
				if err != nil || !usersEqual(stored, want) {
					t.Fatalf("Get after Update = %+v, %v; want %+v", stored, err, want)
				}
			})
		}
		t.Run("unknown id", func(t *testing.T) {
			if _, err := r.Update(ctx, "u_nope", UserPatch{DisplayName: &name, UpdateTime: later}, nil); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Update = %v, want ErrNotFound", err)
			}
		})
		t.Run("joins the call's unit of work", func(t *testing.T) {
			// A call whose outcome is not recorded leaves no write behind:
			// the update commits with the outcome or not at all.
			other := "Rolled Back"
			err := sqlstore.NewIdempotency(r.SQL(), nil).Do(ctx, idempotency.Key{Method: "/m", Key: "k"},
				func(ctx context.Context) (idempotency.Outcome, bool) {
					if _, err := r.Update(ctx, "u_1", UserPatch{DisplayName: &other, UpdateTime: later}, nil); err != nil {
						t.Fatal(err)
					}
					return idempotency.Outcome{}, false
				})
			if err != nil {
				t.Fatal(err)
			}
			if stored, err := r.Get(ctx, "u_1"); err != nil || stored.DisplayName != want.DisplayName {
				t.Fatalf("display name %q after a rolled-back call, want %q (%v)", stored.DisplayName, want.DisplayName, err)
			}
		})
	})
}

func TestSQLRepositoryList(t *testing.T) {
	forEachStore(t, func(t *testing.T, r *SQLRepository) {
		ctx := t.Context()
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		// Inserted out of order, with create-time ties broken by id.
		in := []User{
			testUser("u_c", "c@example.com", t0.Add(time.Second)),
			testUser("u_a", "a@example.com", t0),
			testUser("u_e", "e@example.com", t0.Add(2*time.Second)),
			testUser("u_b", "b@example.com", t0.Add(time.Second)),
			testUser("u_d", "d@example.com", t0.Add(time.Second)),
		}
		for _, u := range in {
			if err := r.Create(ctx, u, nil); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"u_a", "u_b", "u_c", "u_d", "u_e"}
		tests := []struct {
			name  string
			limit int
		}{
			{"one per page", 1},
			{"two per page", 2},
			{"all at once", 10},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var got []string
				var after *Cursor
				for range 10 {
					page, err := r.List(ctx, after, tc.limit)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) > tc.limit {
						t.Fatalf("page of %d users, limit %d", len(page), tc.limit)
					}
					for _, u := range page {
						got = append(got, u.ID)
					}
					if len(page) < tc.limit {
						break
					}
					last := page[len(page)-1]
					after = &Cursor{CreateTime: last.CreateTime, ID: last.ID}
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Fatalf("listed %v, want %v", got, want)
				}
			})
		}
	})
}
