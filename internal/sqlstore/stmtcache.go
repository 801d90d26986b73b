package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxCachedStatements bounds the statements a DB keeps prepared. A
// repository's statements are a fixed set, but a list query assembled from
// its filters has one text per combination of filters: beyond the bound,
// a statement is prepared for its call only, as without the cache.
const maxCachedStatements = 256

// stmtCache keeps the SQLite statements of a DB prepared, keyed by their
// text: parsing and planning a one-row read costs more than running it.
// database/sql prepares a cached Stmt once on each connection that runs it
// and keeps it there; Tx runs the same Stmt on its connection
// (Tx.StmtContext). PostgreSQL needs none: pgx caches the prepared
// statements of each connection itself.
//
// Preparing takes a connection of the pool; SQLite's writer has one, which
// a transaction holds while it runs. A transaction's first use of a text
// therefore runs it unprepared and leaves the text pending; the next
// transaction prepares it before it begins (prepare).
type stmtCache struct {
	db      *sql.DB
	mu      sync.RWMutex
	m       map[string]*sql.Stmt
	pending map[string]bool // texts a transaction used before they were prepared
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, pending: map[string]bool{}}
}

// stmt returns the prepared statement of query, preparing it on first use,
// or nil when the cache is full or query does not prepare (its call then
// runs unprepared and reports the error).
func (c *stmtCache) stmt(ctx context.Context, query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	s, ok := c.m[query]
	n := len(c.m)
	c.mu.RUnlock()
	if ok || n >= maxCachedStatements {
		return s
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok { // prepared concurrently: keep one
		_ = s.Close()
		return prev
	}
	if len(c.m) >= maxCachedStatements {
		_ = s.Close()
		return nil
	}
	c.m[query] = s
	return s
}

// inTx returns the prepared statement of query for a transaction to run
// (Tx.StmtContext), or nil: then it is left pending, to be prepared by the
// next prepare.
func (c *stmtCache) inTx(query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	s, ok := c.m[query]
	known := ok || c.pending[query] || len(c.m)+len(c.pending) >= maxCachedStatements
	c.mu.RUnlock()
	if !known {
		c.mu.Lock()
		if len(c.m)+len(c.pending) < maxCachedStatements {
			c.pending[query] = true
		}
		c.mu.Unlock()
	}
	return s
}

// prepare prepares the pending texts. Call it before taking a connection
// for a transaction: it waits for one, as the transaction would.
func (c *stmtCache) prepare(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.RLock()
	n := len(c.pending)
	c.mu.RUnlock()
	if n == 0 {
		return
	}
	c.mu.Lock()
	texts := make([]string, 0, len(c.pending))
	for q := range c.pending {
		texts = append(texts, q)
	}
	clear(c.pending)
	c.mu.Unlock()
	for _, q := range texts {
		c.stmt(ctx, q)
	}
}

// close closes the cached statements.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.m {
		_ = s.Close()
		delete(c.m, q)
	}
}

// QueryContext runs query, a prepared statement on SQLite (see DB).
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := db.stmts.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return db.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query, a prepared statement on SQLite (see DB).
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := db.stmts.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.DB.QueryRowContext(ctx, query, args...)
}

// ExecContext runs query with the writer, a prepared statement on SQLite
// (see DB).
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := db.writerHeld(ctx); err != nil {
		return nil, err
	}
	w, stmts := db.write()
	stmts.prepare(ctx)
	if s := stmts.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return w.ExecContext(ctx, query, args...)
}

// Close closes the prepared statements and the database.
func (db *DB) Close() error {
	db.stmts.close()
	db.wstmts.close()
	var err error
	if db.writer != nil {
		err = db.writer.Close()
	}
	return errors.Join(err, db.DB.Close())
}

// QueryContext runs query in the transaction, a prepared statement on
// SQLite (see DB).
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := tx.stmts.inTx(query); s != nil {
		return tx.Tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query in the transaction, a prepared statement on
// SQLite (see DB).
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := tx.stmts.inTx(query); s != nil {
		return tx.Tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

// ExecContext runs query in the transaction, a prepared statement on
// SQLite (see DB).
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := tx.stmts.inTx(query); s != nil {
		return tx.Tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}
