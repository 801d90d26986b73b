package usersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/rpcerr"
	"github.com/kgrpc/platform/internal/sqlstore"
)

// Limits of the account fields and of ListUsers pages.
const (
	// MaxEmailLen is the longest accepted email, in bytes (RFC 5321 path limit).
	MaxEmailLen = 254
	// MinPasswordLen is the shortest accepted password, in characters.
	MinPasswordLen = 8
	// MaxPasswordLen is the longest accepted password, in bytes (bcrypt's limit).
	MaxPasswordLen = 72
	// MaxDisplayNameLen is the longest accepted display name, in characters.
	MaxDisplayNameLen = 100
	// DefaultPageSize is the ListUsers page size when the request has none.
	DefaultPageSize = 20
	// MaxPageSize caps the ListUsers page size.
	MaxPageSize = 100
	// DefaultAdminDisplayName is the display name EnsureAdmin uses when given
	// none.
	DefaultAdminDisplayName = "Administrator"
)

// Me is the user id that names the calling user.
const Me = "me"

// Config configures a Service.
type Config struct {
	// Repo stores the users. Required.
	Repo Repository
	// Issuer signs the access tokens of Login. Required.
	Issuer *auth.Issuer
	// Logger receives storage failures; nil discards them.
	Logger *slog.Logger
	// Notify, when not nil, is called after a transaction that added outbox
	// events commits (typically outbox.Relay.Notify).
	Notify func()
}

// Service implements usersv1.UserServiceServer.
type Service struct {
	usersv1.UnimplementedUserServiceServer

	repo     Repository
	issuer   *auth.Issuer
	logger   *slog.Logger
	notify   func()
	now      func() time.Time
	hashCost int
	// dummyHash is compared against when the email is unknown, so that an
	// unknown email costs as much as a wrong password.
	dummyHash []byte
}

var _ usersv1.UserServiceServer = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	return newService(cfg, bcrypt.DefaultCost)
}

func newService(cfg Config, hashCost int) (*Service, error) {
	if cfg.Repo == nil {
		return nil, errors.New("usersvc: Config.Repo is required")
	}
	if cfg.Issuer == nil {
		return nil, errors.New("usersvc: Config.Issuer is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a real password"), hashCost)
	if err != nil {
		return nil, fmt.Errorf("usersvc: prepare password hashing: %w", err)
	}
	return &Service{
		repo:      cfg.Repo,
		issuer:    cfg.Issuer,
		logger:    cfg.Logger,
		notify:    cfg.Notify,
		now:       func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
		hashCost:  hashCost,
		dummyHash: dummy,
	}, nil
}

// CreateUser registers a new customer account. Anyone may call it.
func (s *Service) CreateUser(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.CreateUserResponse, error) {
	email, norm, err := parseEmail(req.GetEmail())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := checkPassword(req.GetPassword()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	name, err := parseDisplayName(req.GetDisplayName())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	u, err := s.create(ctx, email, norm, req.GetPassword(), name, auth.RoleCustomer)
	if errors.Is(err, ErrEmailTaken) {
		return nil, status.Error(codes.AlreadyExists, "email is already registered")
	}
	if err != nil {
		return nil, s.internal(ctx, "create user", err)
	}
	return &usersv1.CreateUserResponse{User: toProto(u)}, nil
}

// create hashes password and stores a new user with a UserCreated event.
func (s *Service) create(ctx context.Context, email, norm, password, name string, role auth.Role) (User, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.hashCost)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	now := s.now()
	u := User{
		ID:              sqlstore.NewID("u_"),
		Email:           email,
		EmailNormalized: norm,
		DisplayName:     name,
		Role:            role,
		PasswordHash:    string(hash),
		TokenVersion:    1,
		CreateTime:      now,
		UpdateTime:      now,
	}
	if err := s.repo.Create(ctx, u, createdEvents); err != nil {
		return User{}, err
	}
	s.notify()
	return u, nil
}

// createdEvents describes a new user: UserCreated.
func createdEvents(u User) []proto.Message {
	return []proto.Message{&usersv1.UserCreated{
		UserId:      u.ID,
		Email:       u.Email,
		DisplayName: u.DisplayName,
		Role:        toProtoRole(u.Role),
		CreateTime:  timestamppb.New(u.CreateTime),
	}}
}

// errBadCredentials is Login's one answer to an unknown email and to a wrong
// password.
var errBadCredentials = status.Error(codes.Unauthenticated, "invalid email or password")

// Login checks an email and password and returns an access token. Anyone
// may call it.
func (s *Service) Login(ctx context.Context, req *usersv1.LoginRequest) (*usersv1.LoginResponse, error) {
	norm := normalizeEmail(req.GetEmail())
	password := req.GetPassword()
	if norm == "" || password == "" {
		return nil, status.Error(codes.InvalidArgument, "email and password are required")
	}
	u, err := s.repo.GetByEmail(ctx, norm)
	switch {
	case errors.Is(err, ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return nil, errBadCredentials
	case err != nil:
		return nil, s.internal(ctx, "login", err)
	}
	if len(password) > MaxPasswordLen {
		// bcrypt only looks at the first 72 bytes; never accept a longer one.
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password[:MaxPasswordLen]))
		return nil, errBadCredentials
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return nil, errBadCredentials
		}
		return nil, s.internal(ctx, "login: compare password", err)
	}
	token, exp, err := s.issuer.Issue(u.ID, u.Role, u.TokenVersion)
	if err != nil {
		return nil, s.internal(ctx, "login: issue token", err)
	}
	return &usersv1.LoginResponse{
		AccessToken: token,
		ExpireTime:  timestamppb.New(exp),
		User:        toProto(u),
	}, nil
}

// GetUser returns one user: the caller's own account (id "me" or their id)
// or, for admins, any account.
func (s *Service) GetUser(ctx context.Context, req *usersv1.GetUserRequest) (*usersv1.GetUserResponse, error) {
	id, err := authorizeUser(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	u, err := s.repo.Get(ctx, id)
	if err != nil {
		return nil, s.userError(ctx, "get user", id, err)
	}
	return &usersv1.GetUserResponse{User: toProto(u)}, nil
}

// UpdateUser changes the display name and/or password of the caller's own
// account or, for admins, of any account.
func (s *Service) UpdateUser(ctx context.Context, req *usersv1.UpdateUserRequest) (*usersv1.UpdateUserResponse, error) {
	id, err := authorizeUser(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if req.DisplayName == nil && req.Password == nil {
		return nil, status.Error(codes.InvalidArgument, "nothing to update: set display_name or password")
	}
	var p UserPatch
	if req.DisplayName != nil {
		name, err := parseDisplayName(req.GetDisplayName())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		p.DisplayName = &name
	}
	if req.Password != nil {
		if err := checkPassword(req.GetPassword()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(req.GetPassword()), s.hashCost)
		if err != nil {
			return nil, s.internal(ctx, "update user: hash password", err)
		}
		h := string(hash)
		p.PasswordHash = &h
	}
	p.UpdateTime = s.now()
	u, err := s.repo.Update(ctx, id, p, revokedEvents(p))
	if err != nil {
		return nil, s.userError(ctx, "update user", id, err)
	}
	if p.revokes() > 0 {
		s.notify()
	}
	return &usersv1.UpdateUserResponse{User: toProto(u)}, nil
}

// DeleteUser deletes an account: the caller's own, or any for an admin.
// Its tokens stop working: UserTokensRevoked goes out with the deletion.
func (s *Service) DeleteUser(ctx context.Context, req *usersv1.DeleteUserRequest) (*usersv1.DeleteUserResponse, error) {
	id, err := authorizeUser(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	now := s.now()
	if _, err := s.repo.Delete(ctx, id, func(u User) []proto.Message {
		return []proto.Message{&usersv1.UserTokensRevoked{UserId: u.ID, TokenVersion: u.TokenVersion + 1, Deleted: true, RevokeTime: timestamppb.New(now)}}
	}); err != nil {
		return nil, s.userError(ctx, "delete user", id, err)
	}
	s.notify()
	return &usersv1.DeleteUserResponse{}, nil
}

// revokedEvents describes an update: UserTokensRevoked when p revokes the
// user's tokens (the user it is given carries the raised version), none
// otherwise.
func revokedEvents(p UserPatch) UserEvents {
	if p.revokes() == 0 {
		return nil
	}
	return func(u User) []proto.Message {
		return []proto.Message{&usersv1.UserTokensRevoked{UserId: u.ID, TokenVersion: u.TokenVersion, RevokeTime: timestamppb.New(p.UpdateTime)}}
	}
}

// ListUsers pages through all users, oldest first. Admins only.
func (s *Service) ListUsers(ctx context.Context, req *usersv1.ListUsersRequest) (*usersv1.ListUsersResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	size, after, err := sqlstore.PageRequest(req.GetPageSize(), req.GetPageToken(), DefaultPageSize, MaxPageSize)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	users, err := s.repo.List(ctx, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list users", err)
	}
	resp := &usersv1.ListUsersResponse{}
	users, resp.NextPageToken = sqlstore.NextPage(users, size, User.cursor)
	resp.Users = make([]*usersv1.User, len(users))
	for i, u := range users {
		resp.Users[i] = toProto(u)
	}
	return resp, nil
}

// EnsureAdmin makes sure an admin account with email exists: it creates one
// with password and displayName (DefaultAdminDisplayName when empty), or
// promotes the existing account of that email to admin. It never changes an
// existing account's password or display name, but checks all inputs as
// CreateUser would. It is safe to call on every start, for seeding from flags.
func (s *Service) EnsureAdmin(ctx context.Context, email, password, displayName string) error {
	addr, norm, err := parseEmail(email)
	if err != nil {
		return fmt.Errorf("usersvc: ensure admin: %w", err)
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("usersvc: ensure admin: %w", err)
	}
	if strings.TrimSpace(displayName) == "" {
		displayName = DefaultAdminDisplayName
	}
	name, err := parseDisplayName(displayName)
	if err != nil {
		return fmt.Errorf("usersvc: ensure admin: %w", err)
	}
	// Two rounds: a concurrent create of the same email makes the first
	// create fail, and the second round then promotes that account.
	for range 2 {
		u, err := s.repo.GetByEmail(ctx, norm)
		switch {
		case err == nil:
			if u.Role == auth.RoleAdmin {
				return nil
			}
			admin := auth.RoleAdmin
			p := UserPatch{Role: &admin, UpdateTime: s.now()}
			if _, err := s.repo.Update(ctx, u.ID, p, revokedEvents(p)); err != nil {
				return fmt.Errorf("usersvc: ensure admin: promote %s: %w", u.ID, err)
			}
			s.notify()
			s.logger.InfoContext(ctx, "usersvc: promoted user to admin", "user_id", u.ID)
			return nil
		case !errors.Is(err, ErrNotFound):
			return fmt.Errorf("usersvc: ensure admin: %w", err)
		}
		u, err = s.create(ctx, addr, norm, password, name, auth.RoleAdmin)
		if errors.Is(err, ErrEmailTaken) {
			continue
		}
		if err != nil {
			return fmt.Errorf("usersvc: ensure admin: %w", err)
		}
		s.logger.InfoContext(ctx, "usersvc: created admin", "user_id", u.ID)
		return nil
	}
	return fmt.Errorf("usersvc: ensure admin: %w", ErrEmailTaken)
}

// authorizeUser resolves id ("me" is the caller) and checks that the caller
// may reach that account: their own, or any for an admin. Others get
// PermissionDenied whether or not the account exists.
func authorizeUser(ctx context.Context, id string) (string, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return "", err
	}
	switch id {
	case "":
		return "", status.Error(codes.InvalidArgument, `id is required (a user id or "me")`)
	case Me:
		return c.Subject, nil
	}
	if id != c.Subject && !c.IsAdmin() {
		return "", status.Error(codes.PermissionDenied, "you may only access your own account")
	}
	return id, nil
}

// userError maps a repository error about user id: NotFound for a user
// that does not exist, Internal (see internal) for the rest.
func (s *Service) userError(ctx context.Context, op, id string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return status.Errorf(codes.NotFound, "user %q not found", id)
	}
	return s.internal(ctx, op, err)
}

// internal logs err and returns an Internal status without its details, or
// the status of ctx's end when ctx is done.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	return rpcerr.Internal(ctx, s.logger, "usersvc: "+op, err)
}

// normalizeEmail returns the lookup key of an email: trimmed and lower-cased.
func normalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// parseEmail checks a new account's email and returns it trimmed, and its
// normalized form.
func parseEmail(raw string) (email, norm string, err error) {
	email = strings.TrimSpace(raw)
	switch {
	case email == "":
		return "", "", errors.New("email is required")
	case len(email) > MaxEmailLen:
		return "", "", fmt.Errorf("email is longer than %d bytes", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return "", "", errors.New("email is not a valid address")
	}
	return email, normalizeEmail(email), nil
}

// checkPassword checks a new password's length.
func checkPassword(p string) error {
	switch {
	case utf8.RuneCountInString(p) < MinPasswordLen:
		return fmt.Errorf("password must be at least %d characters", MinPasswordLen)
	case len(p) > MaxPasswordLen:
		return fmt.Errorf("password must be at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// parseDisplayName checks a display name and returns it trimmed.
func parseDisplayName(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "", errors.New("display_name is required")
	case n > MaxDisplayNameLen:
		return "", fmt.Errorf("display_name must be at most %d characters", MaxDisplayNameLen)
	case !utf8.ValidString(name):
		return "", errors.New("display_name is not valid UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", errors.New("display_name must not contain control characters")
	}
	return name, nil
}

func toProtoRole(r auth.Role) usersv1.Role {
	if r == auth.RoleAdmin {
		return usersv1.Role_ROLE_ADMIN
	}
	return usersv1.Role_ROLE_CUSTOMER
}

func toProto(u User) *usersv1.User {
	return &usersv1.User{
		Id:          u.ID,
		Email:       u.Email,
		DisplayName: u.DisplayName,
		Role:        toProtoRole(u.Role),
		CreateTime:  timestamppb.New(u.CreateTime),
		UpdateTime:  timestamppb.New(u.UpdateTime),
	}
}
