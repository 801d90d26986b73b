package sqlstore

import (
	"context"
	"database/sql"
	"errors"
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
	// holding is set while tx is open: on SQLite it holds the one writer
	// connection (see DB.writerHeld).
	holding atomic.Bool
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
// outcome. On SQLite the detached write must come before the unit's first
// write, which holds the one writer connection until the call ends: after
// it, the detached write fails with ErrWriterHeld instead of waiting for
// ever.
func Detach(ctx context.Context) context.Context {
	u, ok := ctx.Value(unitKey{}).(*unit)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, unitKey{}, detached{u})
}

// detached is the value of unitKey in a context Detach made: no unit to
// join, but the unit the call still has, whose writer it must not wait for.
type detached struct{ u *unit }

// ErrWriterHeld is the error of a write on SQLite that would wait for the
// writer connection its own call's unit of work holds: a detached write
// (Detach) after the unit's first write, or DB.ExecContext inside a unit.
var ErrWriterHeld = errors.New("sqlstore: this call's unit of work holds the SQLite writer: write through InTx, or detach before the unit's first write")

// writerHeld returns ErrWriterHeld when ctx's call holds db's one writer
// connection (SQLite) in its unit of work, where a write outside the unit
// would wait for it for ever.
func (db *DB) writerHeld(ctx context.Context) error {
	if db.writer == nil {
		return nil
	}
	var u *unit
	switch v := ctx.Value(unitKey{}).(type) {
	case *unit:
		u = v
	case detached:
		u = v.u
	}
	if u == nil || u.db != db || !u.holding.Load() {
		return nil
	}
	return ErrWriterHeld
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
		u.holding.Store(true)
		if err := fn(&Tx{Tx: tx, Dialect: u.db.Dialect, stmts: u.db.wstmts}); err != nil {
			_ = tx.Rollback()
			u.holding.Store(false)
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
	u.holding.Store(false)
}
