package usersvc

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/validatetest"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

type testEnv struct {
	svc     *Service
	repo    *SQLRepository
	signer  *auth.Verifier
	notices *atomic.Int64
}

// newTestService returns a Service on a fresh SQLite store, hashing at
// bcrypt's minimum cost to keep the tests fast.
func newTestService(t *testing.T) testEnv {
	t.Helper()
	repo := openTestRepo(t)
	issuer, verifier := testKeys(t)
	var n atomic.Int64
	svc, err := newService(Config{Repo: repo, Issuer: issuer, Notify: func() { n.Add(1) }}, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return testEnv{svc: svc, repo: repo, signer: verifier, notices: &n}
}

// testKeys returns an issuer of user tokens and its verifier.
func testKeys(t *testing.T) (*auth.Issuer, *auth.Verifier) {
	t.Helper()
	ring, keys, err := trust.Generate(time.Now(), "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := auth.NewIssuer(keys["usersvc"].Current(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(ring, "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	return issuer, verifier
}

// as returns a context carrying the claims of subject with role.
func as(subject string, role auth.Role) context.Context {
	return auth.NewContext(context.Background(), auth.Claims{Subject: subject, Role: role})
}

var anonymous = context.Background()

// wantCode fails the test unless err has code want.
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
	if _, ok := status.FromError(err); !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
}

func (e testEnv) mustCreate(t *testing.T, email, password, name string) *usersv1.User {
	t.Helper()
	resp, err := validatetest.Wrap(e.svc.CreateUser)(anonymous, &usersv1.CreateUserRequest{Email: email, Password: password, DisplayName: name})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return resp.GetUser()
}

func TestNewValidatesConfig(t *testing.T) {
	repo := openTestRepo(t)
	issuer, _ := testKeys(t)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Repo: repo, Issuer: issuer}, true},
		{"no repo", Config{Issuer: issuer}, false},
		{"no issuer", Config{Repo: repo}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && s.issuer != issuer {
				t.Fatal("issuer not kept")
			}
		})
	}
}

var idPattern = regexp.MustCompile(`^u_[0-9a-f]{16}$`)

func TestCreateUser(t *testing.T) {
	e := newTestService(t)
	u := e.mustCreate(t, "Ann@Example.com", "correct horse", "  Ann  ")
	if !idPattern.MatchString(u.GetId()) {
		t.Errorf("id = %q, want %s", u.GetId(), idPattern)
	}
	if u.GetEmail() != "Ann@Example.com" || u.GetDisplayName() != "Ann" || u.GetRole() != usersv1.Role_ROLE_CUSTOMER {
		t.Errorf("user = %v", u)
	}
	if u.GetCreateTime() == nil || !u.GetCreateTime().AsTime().Equal(u.GetUpdateTime().AsTime()) {
		t.Errorf("create_time %v, update_time %v", u.GetCreateTime(), u.GetUpdateTime())
	}
	stored, err := e.repo.Get(t.Context(), u.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if stored.EmailNormalized != "ann@example.com" {
		t.Errorf("normalized email = %q", stored.EmailNormalized)
	}
	if !strings.HasPrefix(stored.PasswordHash, "$2") || strings.Contains(stored.PasswordHash, "correct horse") {
		t.Errorf("password stored as %q, want a bcrypt hash", stored.PasswordHash)
	}

	t.Run("UserCreated in outbox", func(t *testing.T) {
		rows, err := e.repo.DB().QueryContext(t.Context(), `SELECT event_type, payload FROM outbox ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var events []*usersv1.UserCreated
		for rows.Next() {
			var typ string
			var payload []byte
			if err := rows.Scan(&typ, &payload); err != nil {
				t.Fatal(err)
			}
			if typ != "shop.users.v1.UserCreated" {
				t.Fatalf("event type = %q", typ)
			}
			ev := new(usersv1.UserCreated)
			if err := proto.Unmarshal(payload, ev); err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		if len(events) != 1 {
			t.Fatalf("%d events, want 1", len(events))
		}
		want := &usersv1.UserCreated{UserId: u.GetId(), Email: u.GetEmail(), DisplayName: "Ann", Role: usersv1.Role_ROLE_CUSTOMER, CreateTime: u.GetCreateTime()}
		if !proto.Equal(events[0], want) {
			t.Fatalf("event = %v, want %v", events[0], want)
		}
		if n := e.notices.Load(); n != 1 {
			t.Fatalf("Notify called %d times, want 1", n)
		}
	})

	t.Run("duplicate email", func(t *testing.T) {
		for _, email := range []string{"Ann@Example.com", "ann@example.com", "ANN@EXAMPLE.COM"} {
			t.Run(email, func(t *testing.T) {
				_, err := validatetest.Wrap(e.svc.CreateUser)(anonymous, &usersv1.CreateUserRequest{Email: email, Password: "password1", DisplayName: "Other"})
				wantCode(t, err, codes.AlreadyExists)
			})
		}
		if n := countRows(t, e.repo, "outbox"); n != 1 {
			t.Fatalf("outbox rows = %d, want 1", n)
		}
		if n := e.notices.Load(); n != 1 {
			t.Fatalf("Notify called %d times, want 1", n)
		}
	})
}

func TestCreateUserValidation(t *testing.T) {
	e := newTestService(t)
	long := strings.Repeat("a", 250) + "@example.com"
	tests := []struct {
		name, email, password, displayName string
	}{
		{"empty email", "", "password1", "Ann"},
		{"blank email", "   ", "password1", "Ann"},
		{"no at", "ann.example.com", "password1", "Ann"},
		{"display-name form", "Ann <ann@example.com>", "password1", "Ann"},
		{"two addresses", "a@example.com, b@example.com", "password1", "Ann"},
		{"comment", "ann@example.com (Ann)", "password1", "Ann"},
		{"too long email", long, "password1", "Ann"},
		{"empty password", "ann@example.com", "", "Ann"},
		{"short password", "ann@example.com", "1234567", "Ann"},
		{"password over 72 bytes", "ann@example.com", strings.Repeat("p", 73), "Ann"},
		{"empty display name", "ann@example.com", "password1", ""},
		{"blank display name", "ann@example.com", "password1", " \t "},
		{"long display name", "ann@example.com", "password1", strings.Repeat("x", 101)},
		{"control char in display name", "ann@example.com", "password1", "Ann\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validatetest.Wrap(e.svc.CreateUser)(anonymous, &usersv1.CreateUserRequest{Email: tc.email, Password: tc.password, DisplayName: tc.displayName})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	// The limits themselves are accepted.
	e.mustCreate(t, "edge@example.com", strings.Repeat("p", 72), strings.Repeat("é", 100))
	e.mustCreate(t, "edge2@example.com", "pässwörd", "E")
	if n := countRows(t, e.repo, "users"); n != 2 {
		t.Fatalf("users = %d, want 2", n)
	}
}

func TestLogin(t *testing.T) {
	e := newTestService(t)
	u := e.mustCreate(t, "Ann@Example.com", "correct horse", "Ann")
	tests := []struct {
		name, email, password string
		want                  codes.Code
	}{
		{"success", "Ann@Example.com", "correct horse", codes.OK},
		{"email in other case and spaces", "  ann@EXAMPLE.com ", "correct horse", codes.OK},
		{"wrong password", "ann@example.com", "wrong horse", codes.Unauthenticated},
		{"password in other case", "ann@example.com", "CORRECT HORSE", codes.Unauthenticated},
		{"unknown email", "bob@example.com", "correct horse", codes.Unauthenticated},
		{"password over 72 bytes", "ann@example.com", "correct horse" + strings.Repeat("x", 70), codes.Unauthenticated},
		{"empty email", "", "correct horse", codes.InvalidArgument},
		{"empty password", "ann@example.com", "", codes.InvalidArgument},
	}
	var messages []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: tc.email, Password: tc.password})
			wantCode(t, err, tc.want)
			if tc.want == codes.Unauthenticated {
				messages = append(messages, status.Convert(err).Message())
			}
			if tc.want != codes.OK {
				return
			}
			if !proto.Equal(resp.GetUser(), u) {
				t.Fatalf("user = %v, want %v", resp.GetUser(), u)
			}
			c, err := e.signer.Verify(resp.GetAccessToken())
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != u.GetId() || c.Role != auth.RoleCustomer {
				t.Fatalf("claims = %+v", c)
			}
			exp := resp.GetExpireTime().AsTime()
			if !exp.Equal(c.ExpiresAt) || time.Until(exp) > time.Hour || time.Until(exp) < 59*time.Minute {
				t.Fatalf("expire_time = %v, claims expire %v", exp, c.ExpiresAt)
			}
		})
	}
	// No user enumeration: one message for every credential failure.
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Fatalf("Unauthenticated messages differ: %q", messages)
		}
	}
}

func TestGetUser(t *testing.T) {
	e := newTestService(t)
	ann := e.mustCreate(t, "ann@example.com", "password1", "Ann")
	bob := e.mustCreate(t, "bob@example.com", "password1", "Bob")
	tests := []struct {
		name   string
		ctx    context.Context
		id     string
		want   codes.Code
		wantID string
	}{
		{"no token", anonymous, ann.GetId(), codes.Unauthenticated, ""},
		{"no token me", anonymous, "me", codes.Unauthenticated, ""},
		{"self by id", as(ann.GetId(), auth.RoleCustomer), ann.GetId(), codes.OK, ann.GetId()},
		{"self as me", as(ann.GetId(), auth.RoleCustomer), "me", codes.OK, ann.GetId()},
		{"other user", as(ann.GetId(), auth.RoleCustomer), bob.GetId(), codes.PermissionDenied, ""},
		{"unknown id as customer", as(ann.GetId(), auth.RoleCustomer), "u_0000000000000000", codes.PermissionDenied, ""},
		{"service role is not admin", as("ordersvc", auth.RoleService), bob.GetId(), codes.PermissionDenied, ""},
		{"admin reads other", as("u_admin", auth.RoleAdmin), bob.GetId(), codes.OK, bob.GetId()},
		{"admin unknown id", as("u_admin", auth.RoleAdmin), "u_0000000000000000", codes.NotFound, ""},
		{"me of deleted account", as("u_gone", auth.RoleCustomer), "me", codes.NotFound, ""},
		{"empty id", as(ann.GetId(), auth.RoleCustomer), "", codes.InvalidArgument, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.GetUser)(tc.ctx, &usersv1.GetUserRequest{Id: tc.id})
			wantCode(t, err, tc.want)
			if tc.want == codes.OK && resp.GetUser().GetId() != tc.wantID {
				t.Fatalf("got user %v, want %s", resp.GetUser(), tc.wantID)
			}
		})
	}
}

func TestUpdateUser(t *testing.T) {
	e := newTestService(t)
	ann := e.mustCreate(t, "ann@example.com", "password1", "Ann")
	bob := e.mustCreate(t, "bob@example.com", "password1", "Bob")
	annCtx := as(ann.GetId(), auth.RoleCustomer)
	adminCtx := as("u_admin", auth.RoleAdmin)
	str := func(s string) *string { return &s }

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			ctx  context.Context
			req  *usersv1.UpdateUserRequest
			want codes.Code
		}{
			{"no token", anonymous, &usersv1.UpdateUserRequest{Id: "me", DisplayName: str("X")}, codes.Unauthenticated},
			{"other user", annCtx, &usersv1.UpdateUserRequest{Id: bob.GetId(), DisplayName: str("X")}, codes.PermissionDenied},
			{"nothing to update", annCtx, &usersv1.UpdateUserRequest{Id: "me"}, codes.InvalidArgument},
			{"empty display name", annCtx, &usersv1.UpdateUserRequest{Id: "me", DisplayName: str("  ")}, codes.InvalidArgument},
			{"long display name", annCtx, &usersv1.UpdateUserRequest{Id: "me", DisplayName: str(strings.Repeat("x", 101))}, codes.InvalidArgument},
			{"short password", annCtx, &usersv1.UpdateUserRequest{Id: "me", Password: str("short")}, codes.InvalidArgument},
			{"long password", annCtx, &usersv1.UpdateUserRequest{Id: "me", Password: str(strings.Repeat("p", 73))}, codes.InvalidArgument},
			{"admin unknown id", adminCtx, &usersv1.UpdateUserRequest{Id: "u_0000000000000000", DisplayName: str("X")}, codes.NotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := validatetest.Wrap(e.svc.UpdateUser)(tc.ctx, tc.req)
				wantCode(t, err, tc.want)
			})
		}
		// Nothing changed.
		got, err := validatetest.Wrap(e.svc.GetUser)(annCtx, &usersv1.GetUserRequest{Id: "me"})
		if err != nil || !proto.Equal(got.GetUser(), ann) {
			t.Fatalf("after failed updates: %v, %v; want %v", got.GetUser(), err, ann)
		}
	})

	t.Run("display name only keeps password", func(t *testing.T) {
		resp, err := validatetest.Wrap(e.svc.UpdateUser)(annCtx, &usersv1.UpdateUserRequest{Id: "me", DisplayName: str("  Annie ")})
		if err != nil {
			t.Fatal(err)
		}
		u := resp.GetUser()
		if u.GetDisplayName() != "Annie" || u.GetEmail() != ann.GetEmail() || !u.GetCreateTime().AsTime().Equal(ann.GetCreateTime().AsTime()) {
			t.Fatalf("user = %v", u)
		}
		if !u.GetUpdateTime().AsTime().After(ann.GetUpdateTime().AsTime()) {
			t.Fatalf("update_time %v not after %v", u.GetUpdateTime().AsTime(), ann.GetUpdateTime().AsTime())
		}
		if _, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "ann@example.com", Password: "password1"}); err != nil {
			t.Fatalf("login with unchanged password: %v", err)
		}
	})

	t.Run("password change", func(t *testing.T) {
		resp, err := validatetest.Wrap(e.svc.UpdateUser)(annCtx, &usersv1.UpdateUserRequest{Id: ann.GetId(), Password: str("new password")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetUser().GetDisplayName() != "Annie" {
			t.Fatalf("display name changed to %q", resp.GetUser().GetDisplayName())
		}
		_, err = validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "ann@example.com", Password: "password1"})
		wantCode(t, err, codes.Unauthenticated)
		if _, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "ann@example.com", Password: "new password"}); err != nil {
			t.Fatalf("login with new password: %v", err)
		}
	})

	t.Run("admin updates other", func(t *testing.T) {
		resp, err := validatetest.Wrap(e.svc.UpdateUser)(adminCtx, &usersv1.UpdateUserRequest{Id: bob.GetId(), DisplayName: str("Robert"), Password: str("bobs new pw")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetUser().GetDisplayName() != "Robert" || resp.GetUser().GetRole() != usersv1.Role_ROLE_CUSTOMER {
			t.Fatalf("user = %v", resp.GetUser())
		}
		if _, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "bob@example.com", Password: "bobs new pw"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestListUsers(t *testing.T) {
	e := newTestService(t)
	ctx := t.Context()
	// 105 users straight into the store (hashing is not what is tested),
	// some sharing a create time.
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	for i := range 105 {
		u := testUser(sqlstore.NewID("u_"), "user"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+"@example.com", t0.Add(time.Duration(i/3)*time.Second))
		if err := e.repo.Create(ctx, u, nil); err != nil {
			t.Fatal(err)
		}
	}
	all, err := e.repo.List(ctx, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range all {
		want = append(want, u.ID)
	}
	admin := as("u_admin", auth.RoleAdmin)

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			ctx  context.Context
			req  *usersv1.ListUsersRequest
			want codes.Code
		}{
			{"no token", anonymous, &usersv1.ListUsersRequest{}, codes.Unauthenticated},
			{"customer", as(want[0], auth.RoleCustomer), &usersv1.ListUsersRequest{}, codes.PermissionDenied},
			{"negative page size", admin, &usersv1.ListUsersRequest{PageSize: -1}, codes.InvalidArgument},
			{"token not base64", admin, &usersv1.ListUsersRequest{PageToken: "!!!"}, codes.InvalidArgument},
			{"token without separator", admin, &usersv1.ListUsersRequest{PageToken: "MTIz"}, codes.InvalidArgument},
			{"token with bad time", admin, &usersv1.ListUsersRequest{PageToken: "eDp1XzE"}, codes.InvalidArgument},  // "x:u_1"
			{"token without id", admin, &usersv1.ListUsersRequest{PageToken: "MTIzOg"}, codes.InvalidArgument},      // "123:"
			{"token negative time", admin, &usersv1.ListUsersRequest{PageToken: "LTE6dV8x"}, codes.InvalidArgument}, // "-1:u_1"
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := validatetest.Wrap(e.svc.ListUsers)(tc.ctx, tc.req)
				wantCode(t, err, tc.want)
			})
		}
	})

	tests := []struct {
		name      string
		pageSize  int32
		wantPages []int
	}{
		{"default size", 0, []int{20, 20, 20, 20, 20, 5}},
		{"capped size", 1000, []int{100, 5}},
		{"size 7", 7, []int{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}},
		{"exact division", 35, []int{35, 35, 35}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var pages []int
			token := ""
			for range 50 {
				resp, err := validatetest.Wrap(e.svc.ListUsers)(admin, &usersv1.ListUsersRequest{PageSize: tc.pageSize, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				pages = append(pages, len(resp.GetUsers()))
				for _, u := range resp.GetUsers() {
					got = append(got, u.GetId())
				}
				token = resp.GetNextPageToken()
				if token == "" {
					break
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("listed %d users out of order or incomplete", len(got))
			}
			if len(pages) != len(tc.wantPages) {
				t.Fatalf("pages = %v, want %v", pages, tc.wantPages)
			}
			for i := range pages {
				if pages[i] != tc.wantPages[i] {
					t.Fatalf("pages = %v, want %v", pages, tc.wantPages)
				}
			}
		})
	}
}

func TestEnsureAdmin(t *testing.T) {
	ctx := t.Context()
	e := newTestService(t)

	t.Run("invalid input", func(t *testing.T) {
		tests := []struct{ name, email, password string }{
			{"bad email", "not an email", "password1"},
			{"short password", "root@example.com", "short"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if err := e.svc.EnsureAdmin(ctx, tc.email, tc.password, ""); err == nil {
					t.Fatal("EnsureAdmin accepted invalid input")
				}
			})
		}
	})

	t.Run("creates then is idempotent", func(t *testing.T) {
		for i, pw := range []string{"admin password", "admin password", "another password"} {
			if err := e.svc.EnsureAdmin(ctx, "Root@Example.com", pw, ""); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if n := countRows(t, e.repo, "users"); n != 1 {
			t.Fatalf("users = %d, want 1", n)
		}
		if n := countRows(t, e.repo, "outbox"); n != 1 {
			t.Fatalf("outbox rows = %d, want 1 (one UserCreated)", n)
		}
		// The first password stays; later calls do not change it.
		resp, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "root@example.com", Password: "admin password"})
		if err != nil {
			t.Fatal(err)
		}
		if u := resp.GetUser(); u.GetRole() != usersv1.Role_ROLE_ADMIN || u.GetDisplayName() != DefaultAdminDisplayName {
			t.Fatalf("admin = %v", u)
		}
		if c, _ := e.signer.Verify(resp.GetAccessToken()); c.Role != auth.RoleAdmin {
			t.Fatalf("token role = %q, want admin", c.Role)
		}
		_, err = validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "root@example.com", Password: "another password"})
		wantCode(t, err, codes.Unauthenticated)
	})

	t.Run("promotes existing customer", func(t *testing.T) {
		u := e.mustCreate(t, "carol@example.com", "carols password", "Carol")
		if err := e.svc.EnsureAdmin(ctx, "CAROL@example.com", "ignored password", "Boss"); err != nil {
			t.Fatal(err)
		}
		resp, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "carol@example.com", Password: "carols password"})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetUser()
		if got.GetId() != u.GetId() || got.GetRole() != usersv1.Role_ROLE_ADMIN || got.GetDisplayName() != "Carol" {
			t.Fatalf("promoted user = %v", got)
		}
		// As an admin, Carol may now list users.
		if _, err := validatetest.Wrap(e.svc.ListUsers)(as(got.GetId(), auth.RoleAdmin), &usersv1.ListUsersRequest{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStorageFailureIsInternalWithoutDetails(t *testing.T) {
	e := newTestService(t)
	u := e.mustCreate(t, "ann@example.com", "password1", "Ann")
	var logs bytes.Buffer
	e.svc.logger = slog.New(slog.NewTextHandler(&logs, nil))
	e.repo.Close()
	admin := as("u_admin", auth.RoleAdmin)
	tests := []struct {
		name string
		call func() error
	}{
		{"CreateUser", func() error {
			_, err := validatetest.Wrap(e.svc.CreateUser)(anonymous, &usersv1.CreateUserRequest{Email: "bob@example.com", Password: "password1", DisplayName: "Bob"})
			return err
		}},
		{"Login", func() error {
			_, err := validatetest.Wrap(e.svc.Login)(anonymous, &usersv1.LoginRequest{Email: "ann@example.com", Password: "password1"})
			return err
		}},
		{"GetUser", func() error {
			_, err := validatetest.Wrap(e.svc.GetUser)(admin, &usersv1.GetUserRequest{Id: u.GetId()})
			return err
		}},
		{"UpdateUser", func() error {
			name := "X"
			_, err := validatetest.Wrap(e.svc.UpdateUser)(admin, &usersv1.UpdateUserRequest{Id: u.GetId(), DisplayName: &name})
			return err
		}},
		{"ListUsers", func() error {
			_, err := validatetest.Wrap(e.svc.ListUsers)(admin, &usersv1.ListUsersRequest{})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantCode(t, err, codes.Internal)
			if msg := status.Convert(err).Message(); msg != "internal error" {
				t.Fatalf("message = %q leaks details", msg)
			}
			if !strings.Contains(logs.String(), "database is closed") {
				t.Fatalf("storage error not logged; log = %q", logs.String())
			}
			logs.Reset()
		})
	}
	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(admin)
		cancel()
		_, err := validatetest.Wrap(e.svc.GetUser)(ctx, &usersv1.GetUserRequest{Id: u.GetId()})
		wantCode(t, err, codes.Canceled)
	})
}

func TestCreateUserConcurrentSameEmail(t *testing.T) {
	e := newTestService(t)
	const n = 8
	codesCh := make(chan codes.Code, n)
	for i := range n {
		go func() {
			email := "Race@Example.com"
			if i%2 == 1 {
				email = "race@example.COM"
			}
			_, err := validatetest.Wrap(e.svc.CreateUser)(anonymous, &usersv1.CreateUserRequest{Email: email, Password: "password1", DisplayName: "Racer"})
			codesCh <- status.Code(err)
		}()
	}
	got := map[codes.Code]int{}
	for range n {
		got[<-codesCh]++
	}
	if got[codes.OK] != 1 || got[codes.AlreadyExists] != n-1 {
		t.Fatalf("codes = %v, want one OK and %d AlreadyExists", got, n-1)
	}
}
