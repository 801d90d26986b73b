package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/kafkatransport"
)

// MaxTokenTTL is the longest lifetime a user token may have: a revocation
// older than it (and Leeway) concerns no token still valid, so Revocations
// forget it.
const MaxTokenTTL = 24 * time.Hour

// Revocations is what a unit knows of revoked user tokens, from the
// UserTokensRevoked events the users service publishes (Watch). Safe for
// concurrent use.
type Revocations struct {
	mu    sync.RWMutex
	users map[string]revocation // by user id

	caughtUp atomic.Bool
	now      func() time.Time
}

// revocation is the latest revocation of one user's tokens.
type revocation struct {
	version int64 // tokens of an older version are revoked
	deleted bool  // all are
	at      time.Time
}

// NewRevocations returns an empty view.
func NewRevocations() *Revocations {
	return &Revocations{users: map[string]revocation{}, now: time.Now}
}

// Errors of Revoked.
var (
	errDeleted = errors.New("the account was deleted")
	errChanged = errors.New("the password or role changed since it was issued")
	// ErrNotCaughtUp is Revoked's answer until the revocations issued
	// before Watch began have been read: no token is known good yet.
	ErrNotCaughtUp = errors.New("revoked tokens not read yet")
)

// Revoked reports why tokens of user id at version are revoked, or nil. It
// fails closed: until the revocations issued before Watch began are read,
// it returns ErrNotCaughtUp for every token.
func (r *Revocations) Revoked(id string, version int64) error {
	if !r.caughtUp.Load() {
		return ErrNotCaughtUp
	}
	r.mu.RLock()
	rev, ok := r.users[id]
	r.mu.RUnlock()
	switch {
	case !ok:
		return nil
	case rev.deleted:
		return errDeleted
	case version < rev.version:
		return errChanged
	}
	return nil
}

// Apply records ev, keeping the latest revocation of each user.
func (r *Revocations) Apply(ev *usersv1.UserTokensRevoked) {
	at := ev.GetRevokeTime().AsTime()
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.users[ev.GetUserId()]
	if !ok || ev.GetDeleted() || (!old.deleted && ev.GetTokenVersion() > old.version) {
		r.users[ev.GetUserId()] = revocation{version: ev.GetTokenVersion(), deleted: ev.GetDeleted() || old.deleted, at: at}
	}
	if len(r.users)%1024 == 0 {
		r.prune()
	}
}

// prune forgets the revocations no valid token can predate. r.mu is held.
func (r *Revocations) prune() {
	cutoff := r.now().Add(-MaxTokenTTL - Leeway)
	for id, rev := range r.users {
		if rev.at.Before(cutoff) {
			delete(r.users, id)
		}
	}
}

// Health is nil once the revocations issued before Watch began have been
// read, and an error before: a unit that serves before then could accept
// a token revoked just before it started.
func (r *Revocations) Health() error {
	if !r.caughtUp.Load() {
		return ErrNotCaughtUp
	}
	return nil
}

// Watch reads the UserTokensRevoked events of the last MaxTokenTTL (and
// Leeway), then every new one as it comes, until ctx ends. opts are the
// unit's transport options, its Guard included: only events the users
// service signed count.
func (r *Revocations) Watch(ctx context.Context, brokers string, opts ...kafkatransport.SubscriberOption) error {
	since := r.now().Add(-MaxTokenTTL - Leeway)
	return kafkatransport.Watch(ctx, brokers, usersv1.UserTokensRevokedKafkaEvent, since, func(_ context.Context, ev *usersv1.UserTokensRevoked) error {
		r.Apply(ev)
		return nil
	}, func() { r.caughtUp.Store(true) }, opts...)
}
