package usersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/rpcerr"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/kafkatransport/validate"
)

// The limits of each request's fields are its buf.validate rules, in
// proto/shop/users/v1/users.proto, which the server's validation
// interceptor enforces before a handler runs. Those of the pages follow.
const (
	// MaxPasswordLen is the longest password a login compares, in bytes
	// (bcrypt's limit, and that of the password rule).
	MaxPasswordLen = 72
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
	// Rules checks EnsureAdmin's account as CreateUser's request is
	// checked; nil means a new protovalidate.Validator.
	Rules protovalidate.Validator
}

// Service implements usersv1.UserServiceServer.
type Service struct {
	usersv1.UnimplementedUserServiceServer

	repo     Repository
	issuer   *auth.Issuer
	logger   *slog.Logger
	notify   func()
	rules    protovalidate.Validator
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
	if cfg.Rules == nil {
		var err error
		if cfg.Rules, err = protovalidate.New(); err != nil {
			return nil, fmt.Errorf("usersvc: validation rules: %w", err)
		}
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
		rules:     cfg.Rules,
		now:       func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
		hashCost:  hashCost,
		dummyHash: dummy,
	}, nil
}

// CreateUser registers a new customer account. Anyone may call it.
func (s *Service) CreateUser(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.CreateUserResponse, error) {
	// The request's rules (users.proto) have checked its fields.
	email := req.GetEmail()
	u, err := s.create(ctx, email, normalizeEmail(email), req.GetPassword(), strings.TrimSpace(req.GetDisplayName()), auth.RoleCustomer)
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
	// The request's rules have checked the fields it sets, and that it
	// sets one.
	var p UserPatch
	if req.DisplayName != nil {
		name := strings.TrimSpace(req.GetDisplayName())
		p.DisplayName = &name
	}
	if req.Password != nil {
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
	// Settings, not a request: a trailing newline of a secret file is
	// no part of the address.
	email = strings.TrimSpace(email)
	if strings.TrimSpace(displayName) == "" {
		displayName = DefaultAdminDisplayName
	}
	if err := validate.Check(s.rules, &usersv1.CreateUserRequest{Email: email, Password: password, DisplayName: displayName}); err != nil {
		return fmt.Errorf("usersvc: ensure admin: %s", status.Convert(err).Message())
	}
	addr, norm, name := email, normalizeEmail(email), strings.TrimSpace(displayName)
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
	if id == Me {
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
