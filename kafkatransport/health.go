package kafkatransport

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultStallTimeout is how long the oldest unfinished record of a
// partition may stay so before Health reports the partition stalled, when
// WithStallTimeout is not given.
const DefaultStallTimeout = 30 * time.Second

// deadLetterWindow is how long Health reports a dead letter that could not
// be produced, unless a later one is: the record was skipped, and the role
// goes on, so the failure is news for a while, not a state to stay in.
const deadLetterWindow = 5 * time.Minute

// health is what the Health method of a Server or Subscriber reports: a
// fatal consumer error, a failing dead-letter produce, and the partitions
// of its trackers whose oldest unfinished record has not finished within
// the stall timeout.
type health struct {
	mu         sync.Mutex
	stall      time.Duration
	trackers   []*tracker
	fatal      error
	deadLetter error // the last dead letter's failure, nil once one succeeds
	// deadLetterAt is when deadLetter was recorded.
	deadLetterAt time.Time
}

// watch adds the partitions of t to those checked for stalls.
func (h *health) watch(t *tracker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trackers = append(h.trackers, t)
}

// failed records the fatal error a consumer stopped with.
func (h *health) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fatal = err
}

// deadLettered records how the last dead letter went: nil when it was
// produced, else why not.
func (h *health) deadLettered(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deadLetter, h.deadLetterAt = err, time.Now()
}

// err returns every problem found, joined, or nil.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.fatal != nil {
		errs = append(errs, fmt.Errorf("kafkatransport: consumer failed: %w", h.fatal))
	}
	now := time.Now()
	if h.deadLetter != nil && now.Sub(h.deadLetterAt) < deadLetterWindow {
		errs = append(errs, fmt.Errorf("kafkatransport: dead-letter produce failing: %w", h.deadLetter))
	}
	for _, t := range h.trackers {
		for _, s := range t.stalled(now, h.stall) {
			errs = append(errs, fmt.Errorf("kafkatransport: partition %d of %s stalled: the record at offset %d unfinished for %v (stall timeout %v)",
				s.partition, t.topic, s.offset, now.Sub(s.since).Round(time.Millisecond), h.stall))
		}
	}
	return errors.Join(errs...)
}
