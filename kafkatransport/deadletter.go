package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Bounds of dead-lettering one record; doc.go specifies them.
const (
	// deadLetterBudget bounds all the time spent dead-lettering one
	// record; the whole copy may take half of it, the stub the rest.
	deadLetterBudget = 30 * time.Second
	// deadLetterAttempts bounds the produce attempts of the whole copy,
	// and again of the stub.
	deadLetterAttempts = 3
	// maxStubKey and maxStubHeaders bound the original key and the
	// original headers (names and values together) a stub carries.
	maxStubKey     = 4 << 10
	maxStubHeaders = 64 << 10
	// maxDLQError bounds the dlq-error header.
	maxDLQError = 4 << 10
)

// deadLetter is a record to copy to a dead-letter topic, and why.
type deadLetter struct {
	topic    string // the dead-letter topic
	msg      *kafka.Message
	cause    error
	attempts int
	group    string // the consumer group giving it up
}

// deadLetterer produces the dead letters of a Server or Subscriber.
type deadLetterer struct {
	producer *kafka.Producer
	logger   *slog.Logger
	health   *health
	metrics  Metrics

	// mu is held shared around Produce and exclusively to set closed,
	// before the producer closes: a handler that outlived the drain
	// produces no dead letter then.
	mu     sync.RWMutex
	closed bool
}

func newDeadLetterer(producer *kafka.Producer, cfg *config, h *health) *deadLetterer {
	return &deadLetterer{producer: producer, logger: cfg.logger, health: h, metrics: cfg.metrics}
}

// close makes every later produce fail; call it before closing the
// producer.
func (d *deadLetterer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
}

// produce hands m to the producer, unless close was called; its delivery
// report goes to delivered.
func (d *deadLetterer) produce(m *kafka.Message, delivered chan kafka.Event) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return errors.New("kafkatransport: stopped")
	}
	return d.producer.Produce(m, delivered)
}

// errNotAcknowledged is the error of a dead letter the broker did not
// acknowledge in time.
var errNotAcknowledged = errors.New("dead letter not acknowledged in time")

// send dead-letters dl: the whole record if the broker takes it, else a
// stub without the value (doc.go), within deadLetterBudget. It reports
// false only when ctx ended first: the record is then not finished. When
// not even the stub could be produced, it logs the record as lost, records
// the failure for Health, and reports true: nothing retries forever.
func (d *deadLetterer) send(ctx context.Context, dl deadLetter) bool {
	if ctx.Err() != nil {
		return false
	}
	start := time.Now()
	src := dl.msg.TopicPartition
	log := d.logger.With("topic", *src.Topic, "partition", src.Partition, "offset", int64(src.Offset), "dlq", dl.topic)
	err := d.attempt(ctx, dl.record(false), start.Add(deadLetterBudget/2))
	if err == nil {
		log.Error("kafkatransport record dead-lettered", "err", dl.cause)
		d.health.deadLettered(nil)
		d.metrics.DeadLettered(*src.Topic)
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	log.Warn("kafkatransport record not dead-lettered whole; producing a stub", "produce_err", err)
	if err = d.attempt(ctx, dl.record(true), start.Add(deadLetterBudget)); err == nil {
		log.Error("kafkatransport record dead-lettered as a stub", "size", len(dl.msg.Value), "err", dl.cause)
		d.health.deadLettered(nil)
		d.metrics.DeadLettered(*src.Topic)
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	log.Error("kafkatransport record skipped: not even its dead-letter stub could be produced", "produce_err", err, "err", dl.cause)
	d.health.deadLettered(fmt.Errorf("dead letter of %s/%d@%d to %s not produced: %w", *src.Topic, src.Partition, int64(src.Offset), dl.topic, err))
	return true
}

// attempt produces m at most deadLetterAttempts times, backing off from
// 250ms, until the broker acknowledges it, a permanent error, deadline or
// the end of ctx, and returns the last error. Each attempt waits for its
// acknowledgement at most its share of the time left, so that a broker
// that does not answer leaves room for the other attempts.
func (d *deadLetterer) attempt(ctx context.Context, m *kafka.Message, deadline time.Time) error {
	backoff := 250 * time.Millisecond
	share := time.Until(deadline) / deadLetterAttempts
	for n := 1; ; n++ {
		err := d.produceOnce(ctx, m, earliest(deadline, time.Now().Add(share)))
		if err == nil || permanent(err) || n == deadLetterAttempts || ctx.Err() != nil {
			return err
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		backoff *= 2
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// produceOnce produces m and waits, until deadline, for its delivery
// report. A record not acknowledged in time may still be delivered later.
func (d *deadLetterer) produceOnce(ctx context.Context, m *kafka.Message, deadline time.Time) error {
	delivered := make(chan kafka.Event, 1)
	if err := d.produce(m, delivered); err != nil {
		return err
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case e := <-delivered:
		if dm, ok := e.(*kafka.Message); ok {
			return dm.TopicPartition.Error
		}
		return fmt.Errorf("unexpected delivery event %v", e)
	case <-timer.C:
		return errNotAcknowledged
	case <-ctx.Done():
		return ctx.Err()
	}
}

// permanent reports whether err is one that producing the same record
// again cannot fix: the record is too large or invalid, or the topic
// refuses it. A missing topic is retried: after a deletion, or while a new
// topic's metadata spreads, it may come back.
func permanent(err error) bool {
	return hasCode(err, kafka.ErrMsgSizeTooLarge, kafka.ErrInvalidMsgSize, kafka.ErrInvalidMsg, kafka.ErrInvalidRecord,
		kafka.ErrRecordListTooLarge, kafka.ErrTopicAuthorizationFailed, kafka.ErrTopicException, kafka.ErrPolicyViolation)
}

// record returns the dead letter of dl: a copy of the record, or with stub
// its stub, with the dlq-* headers (doc.go, Event record).
func (dl deadLetter) record(stub bool) *kafka.Message {
	m := dl.msg
	out := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &dl.topic, Partition: kafka.PartitionAny}}
	var hs []kafka.Header
	if !stub {
		out.Key, out.Value = m.Key, m.Value
		hs = append(hs, m.Headers...)
	} else {
		if len(m.Key) <= maxStubKey {
			out.Key = m.Key
		} else {
			hs = append(hs, kafka.Header{Key: hdrDLQKeySize, Value: itoa(int64(len(m.Key)))})
		}
		if n := headersSize(m.Headers); n <= maxStubHeaders {
			hs = append(hs, m.Headers...)
		} else {
			hs = append(hs, kafka.Header{Key: hdrDLQHeadersSize, Value: itoa(int64(n))})
		}
	}
	text := dl.cause.Error()
	if len(text) > maxDLQError {
		text = text[:maxDLQError]
	}
	src := m.TopicPartition
	hs = append(hs,
		kafka.Header{Key: hdrDLQError, Value: []byte(text)},
		kafka.Header{Key: hdrDLQAttempts, Value: itoa(int64(dl.attempts))},
		kafka.Header{Key: hdrDLQTopic, Value: []byte(*src.Topic)},
		kafka.Header{Key: hdrDLQPartition, Value: itoa(int64(src.Partition))},
		kafka.Header{Key: hdrDLQOffset, Value: itoa(int64(src.Offset))},
		kafka.Header{Key: hdrDLQGroup, Value: []byte(dl.group)},
	)
	if stub {
		hs = append(hs,
			kafka.Header{Key: hdrDLQStub, Value: []byte("true")},
			kafka.Header{Key: hdrDLQSize, Value: itoa(int64(len(m.Value)))},
		)
	}
	out.Headers = hs
	return out
}

// headersSize returns the bytes of the names and values of hs.
func headersSize(hs []kafka.Header) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value)
	}
	return n
}
