package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"

	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/internal/outbox"
)

// Tx is a unit of work: one write transaction of a DB, through which a
// repository writes its rows and the outbox events that describe them. On
// SQLite its statements are the DB's prepared ones: one text runs as one
// statement on the transaction's connection, so do not run a text again
// while rows of it are still open in the same transaction (close them, as
// ScanAll does, first).
type Tx struct {
	*sql.Tx
	// Dialect is the dialect of the database.
	Dialect Dialect
	stmts   *stmtCache
}

// InTx runs fn in a write transaction and commits it when fn returns nil;
// otherwise it rolls back and returns fn's error as is. Failures to begin
// or commit are wrapped. In SQLite a write transaction takes the write lock
// when it begins (BEGIN IMMEDIATE), so write transactions run one at a time.
//
// When ctx carries a unit of work on db (a call run by Idempotency.Do), fn
// joins it instead: its writes commit with the call's recorded outcome, or
// not at all, and fn's failure undoes only fn's own writes. The InTx calls
// of one unit must not run concurrently. Detach opts a write out.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	if u := db.unitOf(ctx); u != nil {
		return u.inTx(ctx, fn)
	}
	if err := db.writerHeld(ctx); err != nil {
		return err
	}
	sqlTx, err := db.beginTx(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = sqlTx.Rollback()
		}
	}()
	if err = fn(&Tx{Tx: sqlTx, Dialect: db.Dialect, stmts: db.wstmts}); err != nil {
		return err
	}
	if err = sqlTx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	return nil
}

// Lock takes, until the transaction ends, the lock called name, so that
// transactions taking the same lock run one at a time. Use it for
// read-then-write steps that a conditional statement cannot express. In
// PostgreSQL it is a transaction-scoped advisory lock; SQLite write
// transactions hold the database's write lock already, so there it does
// nothing.
func (tx *Tx) Lock(ctx context.Context, name string) error {
	if tx.Dialect != Postgres {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
		return fmt.Errorf("sqlstore: lock %s: %w", name, err)
	}
	return nil
}

// AddEvents adds events, in order, to the outbox table (see outbox.Schema)
// within the transaction: they are published once it commits, and never if
// it rolls back.
func (tx *Tx) AddEvents(ctx context.Context, events ...proto.Message) error {
	return outbox.Add(ctx, tx, events...)
}
