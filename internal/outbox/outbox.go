package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Schema creates the outbox table, in sqlstore's migration dialect (its
// placeholders expand for SQLite and PostgreSQL). Include it in a service's
// first migration; sqlstore's platform migrations add the trace_context
// column.
const Schema = `CREATE TABLE IF NOT EXISTS outbox (
	id {{id}},
	event_type TEXT NOT NULL,
	payload {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL
)`

// Execer runs a statement: a *sql.Tx, or a transaction that wraps one.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Add writes events, in order, to the outbox within tx, each with the
// trace context of ctx, which the relay publishes it with: the event's
// spans then belong to the trace of the call that wrote it. tx is a
// transaction (*sql.Tx, or sqlstore.Tx through which repositories normally
// call it: Tx.AddEvents).
func Add(ctx context.Context, tx Execer, events ...proto.Message) error {
	for _, ev := range events {
		name := ev.ProtoReflect().Descriptor().FullName()
		payload, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("outbox: marshal %s: %w", name, err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (event_type, payload, created_at, trace_context) VALUES ($1, $2, $3, $4)`,
			string(name), payload, time.Now().UnixMilli(), traceOf(ctx))
		if err != nil {
			return fmt.Errorf("outbox: add %s: %w", name, err)
		}
	}
	return nil
}

// Events returns the events that describe a change, given the state S the
// change commits (for a deletion, the state it deletes). A repository write
// takes one, calls it inside the change's transaction and adds what it
// returns to the outbox, so that the events always match the stored state.
// A nil Events adds no events.
type Events[S any] func(state S) []proto.Message

// Of returns the events of state; none when e is nil.
func (e Events[S]) Of(state S) []proto.Message {
	if e == nil {
		return nil
	}
	return e(state)
}

// PublishFunc publishes one event; the relay retries it until it returns nil.
type PublishFunc func(ctx context.Context, ev proto.Message) error

// Relay publishes the outbox's events in order and deletes them once
// published (a batch at a time).
type Relay struct {
	db       *sql.DB
	publish  PublishFunc
	logger   *slog.Logger
	wake     chan struct{}
	interval time.Duration
}

// NewRelay returns a relay for db's outbox.
func NewRelay(db *sql.DB, publish PublishFunc, logger *slog.Logger) *Relay {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{db: db, publish: publish, logger: logger, wake: make(chan struct{}, 1), interval: 500 * time.Millisecond}
}

// Notify wakes the relay: call it after committing a transaction that added
// events, so they go out at once rather than at the next poll.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. It polls every 500ms and whenever Notify is
// called. A failed publish is retried with backoff up to 5s; later events
// wait, so order is kept.
func (r *Relay) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		n, err := r.flush(ctx)
		wait := r.interval
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.logger.Warn("outbox relay", "err", err, "retry_in", backoff)
			wait, backoff = backoff, min(backoff*2, 5*time.Second)
		} else {
			backoff = 100 * time.Millisecond
			if n > 0 {
				continue // there may be more
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-time.After(wait):
		}
	}
}

// flush publishes up to a batch of events in order, deletes those it
// published in one transaction, and returns how many it published. A crash
// before the delete commits publishes them again: events are at least
// once, and their handlers idempotent (kafkatransport's doc).
func (r *Relay) flush(ctx context.Context) (n int, err error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, event_type, payload, trace_context FROM outbox ORDER BY id LIMIT 100`)
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	var batch []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.id, &e.typ, &e.payload, &e.trace); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read outbox: %w", err)
		}
		batch = append(batch, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	// The events published so far are deleted however the loop ends, even
	// as the relay stops (else they go out again after a restart).
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if derr := r.delete(dctx, batch[:n]); derr != nil {
			n, err = 0, errors.Join(err, derr)
		}
	}()
	for _, e := range batch {
		ev, err := decode(e.typ, e.payload)
		if err != nil {
			// No retry can fix it; keep it out of the way of the rest.
			r.logger.Error("outbox: dropping undecodable event", "id", e.id, "type", e.typ, "err", err)
		} else if err := r.publish(context.WithValue(withTrace(ctx, e.trace), entryIDKey{}, e.id), ev); err != nil {
			return n, fmt.Errorf("publish %s #%d: %w", e.typ, e.id, err)
		}
		n++
	}
	return n, nil
}

// delete deletes the published events in one transaction: one commit,
// where a commit per event was most of the relay's database work.
func (r *Relay) delete(ctx context.Context, published []entry) error {
	if len(published) == 0 {
		return nil
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete published outbox events: %w", err)
	}
	defer tx.Rollback() // after Commit, a no-op
	stmt, err := tx.PrepareContext(ctx, `DELETE FROM outbox WHERE id = $1`)
	if err != nil {
		return fmt.Errorf("delete published outbox events: %w", err)
	}
	for _, e := range published {
		if _, err := stmt.ExecContext(ctx, e.id); err != nil {
			return fmt.Errorf("delete outbox #%d: %w", e.id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete published outbox events: %w", err)
	}
	return nil
}

// entryIDKey is the context key of the outbox row id of the event a
// PublishFunc publishes (int64), for PublishTo's ev-id.
type entryIDKey struct{}

// entry is an event read from the outbox.
type entry struct {
	id      int64
	typ     string
	payload []byte
	trace   string
}

// decode returns the event message of type typ.
func decode(typ string, payload []byte) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		return nil, fmt.Errorf("unknown event type: %w", err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, err
	}
	return m, nil
}

// ErrUnknownEvent is returned by publish functions for event types they do
// not handle, such as PublishTo's for a message type that is not an event;
// the relay retries those like any other failure (a later build may know
// the type), keeping the events after it waiting.
var ErrUnknownEvent = errors.New("outbox: no publisher for event type")
