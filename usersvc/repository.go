package usersvc

import (
	"context"
	"errors"
	"time"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
)

// ErrNotFound is returned by a Repository when no user matches.
var ErrNotFound = errors.New("usersvc: user not found")

// ErrEmailTaken is returned by Repository.Create when another user has the
// same normalized email.
var ErrEmailTaken = errors.New("usersvc: email already registered")

// User is a stored account.
type User struct {
	// ID is the immutable user id.
	ID string
	// Email is the sign-in address as the user typed it (trimmed).
	Email string
	// EmailNormalized is the lower-cased Email; it is unique.
	EmailNormalized string
	// DisplayName is how the shop addresses the user.
	DisplayName string
	// Role is auth.RoleCustomer or auth.RoleAdmin.
	Role auth.Role
	// PasswordHash is the bcrypt hash of the password.
	PasswordHash string
	// TokenVersion is carried in the user's tokens; raising it (a password
	// or role change) revokes the older ones.
	TokenVersion int64
	// CreateTime is when the account was created (microsecond precision).
	CreateTime time.Time
	// UpdateTime is when the account last changed (microsecond precision).
	UpdateTime time.Time
}

// cursor returns the position of u in the (CreateTime, ID) order.
func (u User) cursor() Cursor { return Cursor{CreateTime: u.CreateTime, ID: u.ID} }

// UserPatch lists the fields of an update; nil fields are left unchanged.
type UserPatch struct {
	// DisplayName, when set, replaces the display name.
	DisplayName *string
	// PasswordHash, when set, replaces the password hash.
	PasswordHash *string
	// Role, when set, replaces the role.
	Role *auth.Role
	// UpdateTime is the new update time; it is always written.
	UpdateTime time.Time
}

// revokes returns 1 when the patch revokes the user's tokens (a new
// password or role), else 0: what the token version goes up by.
func (p UserPatch) revokes() int64 {
	if p.PasswordHash != nil || p.Role != nil {
		return 1
	}
	return 0
}

// Cursor is a position in the (CreateTime, ID) order of users: a page starts
// right after it. Its Token is the ListUsers page token.
type Cursor = sqlstore.Cursor

// UserEvents returns the events that describe a change of a user, given the
// user as the change stores it.
type UserEvents = outbox.Events[User]

// Repository stores users. Implementations must be safe for concurrent use
// and must report ErrNotFound and ErrEmailTaken as documented.
type Repository interface {
	// Create stores u and adds the events of u to the outbox in the same
	// transaction. It fails with ErrEmailTaken when u.EmailNormalized is
	// taken, and then adds no events.
	Create(ctx context.Context, u User, events UserEvents) error
	// Get returns the user with id, or ErrNotFound.
	Get(ctx context.Context, id string) (User, error)
	// GetByEmail returns the user whose normalized email is emailNormalized,
	// or ErrNotFound.
	GetByEmail(ctx context.Context, emailNormalized string) (User, error)
	// Update applies p to the user with id, adds the events of the
	// updated user to the outbox in the same transaction, and returns the
	// user after the update, or ErrNotFound. A patch that revokes the
	// user's tokens (a password or role) raises TokenVersion by one.
	Update(ctx context.Context, id string, p UserPatch, events UserEvents) (User, error)
	// Delete deletes the user with id, adds the events of the deleted user
	// to the outbox in the same transaction and returns the user as it
	// was, or ErrNotFound.
	Delete(ctx context.Context, id string, events UserEvents) (User, error)
	// List returns up to limit users in (CreateTime, ID) order, starting
	// after the cursor, or from the first user when after is nil.
	List(ctx context.Context, after *Cursor, limit int) ([]User, error)
}

var _ Repository = (*SQLRepository)(nil)
