package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// DefaultIdempotencyTTL is how long outcomes are kept by default.
const DefaultIdempotencyTTL = 24 * time.Hour

// Idempotency is an idempotency.Store in a service's database: outcomes
// live in its idempotency_keys table, and Do's unit of work is one
// transaction that the service's DB.InTx calls join.
type Idempotency struct {
	db          *DB
	afterCommit func()
	now         func() time.Time
}

var _ idempotency.Store = (*Idempotency)(nil)

// NewIdempotency returns the idempotency store of db (Migrate created its
// table). afterCommit, when not nil, is called after each unit of work
// commits: the service's writes (and outbox events) are visible only then,
// so it is where an outbox relay is notified.
func NewIdempotency(db *DB, afterCommit func()) *Idempotency {
	return &Idempotency{db: db, afterCommit: afterCommit, now: time.Now}
}

// Lookup implements idempotency.Store.
func (s *Idempotency) Lookup(ctx context.Context, k idempotency.Key) (idempotency.Outcome, bool, error) {
	var (
		out  idempotency.Outcome
		code int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT fingerprint, code, body FROM idempotency_keys
		WHERE scope = $1 AND method = $2 AND idem_key = $3`, k.Scope, k.Method, k.Key).Scan(&out.Fingerprint, &code, &out.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return idempotency.Outcome{}, false, nil
	}
	if err != nil {
		return idempotency.Outcome{}, false, fmt.Errorf("sqlstore: look up idempotency key: %w", err)
	}
	out.Code = codes.Code(code)
	return out, true, nil
}

// Do implements idempotency.Store: fn's InTx calls on this database join
// one transaction, which commits with the outcome's row.
func (s *Idempotency) Do(ctx context.Context, k idempotency.Key, fn func(ctx context.Context) (idempotency.Outcome, bool)) error {
	u := &unit{db: s.db, ctx: ctx}
	defer u.end() // after a commit, nothing to roll back
	out, record := fn(withUnit(ctx, u))
	if !record {
		return nil
	}
	if u.broken != nil {
		return u.broken
	}
	var n int64
	err := u.inTx(ctx, func(tx *Tx) (err error) {
		n, err = Affected(tx.ExecContext(ctx, `INSERT INTO idempotency_keys
			(scope, method, idem_key, fingerprint, code, body, create_time)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
			k.Scope, k.Method, k.Key, out.Fingerprint, int64(out.Code), out.Body, Micros(s.now())))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: record idempotency key: %w", err)
	}
	if n == 0 {
		return idempotency.ErrConflict
	}
	if err := u.tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	u.tx = nil
	u.holding.Store(false)
	if s.afterCommit != nil {
		s.afterCommit()
	}
	return nil
}

// expireBatch bounds the rows one DELETE of Expire removes, so that it
// holds SQLite's write lock briefly.
const expireBatch = 1000

// Expire deletes the outcomes recorded before t and returns how many, in
// transactions of at most 1000 rows.
func (s *Idempotency) Expire(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for {
		n, err := Affected(s.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE (scope, method, idem_key) IN (
			SELECT scope, method, idem_key FROM idempotency_keys WHERE create_time < $1 LIMIT $2)`, Micros(t), expireBatch))
		if err != nil {
			return total, fmt.Errorf("sqlstore: expire idempotency keys: %w", err)
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}

// ExpireLoop deletes outcomes older than ttl now and then, every tenth of
// ttl but at least every 10 minutes, until ctx ends; failures are logged
// and retried at the next round.
func (s *Idempotency) ExpireLoop(ctx context.Context, ttl time.Duration, logger *slog.Logger) error {
	every := min(ttl/10, 10*time.Minute)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		if n, err := s.Expire(ctx, s.now().Add(-ttl)); err != nil && ctx.Err() == nil {
			logger.Warn("idempotency keys not expired", "err", err)
		} else if n > 0 {
			logger.Debug("idempotency keys expired", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
