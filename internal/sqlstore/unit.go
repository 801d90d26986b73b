package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
)

// unit is the unit of work of one call (see Idempotency.Do): the write
// transactions of its DB.InTx calls are one transaction, begun by the first
// and committed by Do.
type unit struct {
	db *DB
	// ctx is Do's: the transaction lives as long as the call, not as long
	// as the context of the InTx that happened to begin it.
	ctx context.Context
	tx  *sql.Tx // nil until the first InTx
	// done is set once Do has committed or rolled back: an InTx made later
	// with a context that still carries the unit (a goroutine the handler
	// left behind) runs a transaction of its own.
	done atomic.Bool
	// savepoints counts the savepoints taken, to name them.
	savepoints int
	// broken is set when a failed InTx could not be undone.
	broken error
}

type unitKey struct{}

// withUnit returns ctx carrying u.
func withUnit(ctx context.Context, u *unit) context.Context {
	return context.WithValue(ctx, unitKey{}, u)
}

// Detach returns ctx without its unit of work, if it has one: InTx calls
// made with it commit on their own at once. A call that must make a write
// durable before it goes on, say before it asks another service to act on
// it, detaches that write; its other writes still commit with the call's
// outcome.
func Detach(ctx context.Context) context.Context {
	if _, ok := ctx.Value(unitKey{}).(*unit); !ok {
		return ctx
	}
	return context.WithValue(ctx, unitKey{}, (*unit)(nil))
}

// unitOf returns the unit of work of ctx on db, or nil.
func (db *DB) unitOf(ctx context.Context) *unit {
	u, _ := ctx.Value(unitKey{}).(*unit)
	if u == nil || u.db != db || u.done.Load() {
		return nil
	}
	return u
}

// inTx runs fn in the unit's transaction, begun if it is the first; its
// writes stay uncommitted until the unit ends. When fn fails, its writes
// are undone: the transaction is rolled back when fn was the first, else
// the unit returns to a savepoint taken before fn.
func (u *unit) inTx(ctx context.Context, fn func(tx *Tx) error) error {
	if u.broken != nil {
		return u.broken
	}
	if u.tx == nil {
		tx, err := u.db.beginTx(u.ctx)
		if err != nil {
			return fmt.Errorf("sqlstore: begin transaction: %w", err)
		}
		if err := fn(&Tx{Tx: tx, Dialect: u.db.Dialect, stmts: u.db.wstmts}); err != nil {
			_ = tx.Rollback()
			return err
		}
		u.tx = tx
		return nil
	}
	u.savepoints++
	sp := fmt.Sprintf("unit_%d", u.savepoints)
	if _, err := u.tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
		u.broken = fmt.Errorf("sqlstore: savepoint: %w", err)
		return u.broken
	}
	if err := fn(&Tx{Tx: u.tx, Dialect: u.db.Dialect, stmts: u.db.wstmts}); err != nil {
		if _, rerr := u.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); rerr != nil {
			u.broken = fmt.Errorf("sqlstore: roll back to savepoint: %w", rerr)
		}
		return err
	}
	if _, err := u.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp); err != nil {
		u.broken = fmt.Errorf("sqlstore: release savepoint: %w", err)
		return u.broken
	}
	return nil
}

// end ends the unit, without its writes unless they were committed.
func (u *unit) end() {
	u.done.Store(true)
	if u.tx != nil {
		_ = u.tx.Rollback()
		u.tx = nil
	}
}
