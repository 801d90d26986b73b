package kafkatransport

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// maxPartitionQueue bounds the records a subscriber's partition worker
// holds fetched and not yet started: when that many wait, the partition is
// paused until half of them have started.
const maxPartitionQueue = 32

// subRun is one Run of a Subscriber: the poll loop, which hands each
// record to its partition's worker, and the workers.
type subRun struct {
	s        *Subscriber
	ctx      context.Context // ends when the run stops: workers start nothing more
	base     context.Context // handlers' parent: outlives ctx for the drain
	consumer *kafka.Consumer
	dl       *deadLetterer
	trackers map[string]*tracker // by topic

	// workers of the assigned partitions; only the poll goroutine (poll
	// loop and rebalance callback) uses it.
	workers map[partKey]*partWorker
}

// partWorker handles the records of one assignment of one partition, in
// order, one at a time.
type partWorker struct {
	r       *subRun
	tracker *tracker
	ctx     context.Context // ends when the partition is revoked or the run stops
	cancel  context.CancelFunc
	paused  bool // only the poll goroutine uses it

	mu    sync.Mutex
	queue []fetched
	wake  chan struct{} // signalled when a record is queued
}

// fetched is a record waiting for its worker.
type fetched struct {
	msg    *kafka.Message
	ticket ticket
}

func newSubRun(s *Subscriber, ctx, base context.Context, consumer *kafka.Consumer, producer *kafka.Producer) *subRun {
	r := &subRun{
		s: s, ctx: ctx, base: base, consumer: consumer,
		dl:       newDeadLetterer(producer, &s.cfg, &s.health),
		trackers: map[string]*tracker{},
		workers:  map[partKey]*partWorker{},
	}
	for topic := range s.handlers {
		t := newTracker(topic, consumer)
		r.trackers[topic] = t
		s.health.watch(t)
	}
	return r
}

// partKey is the workers' map key of a partition.
type partKey struct {
	topic     string
	partition int32
}

func keyOf(tp kafka.TopicPartition) partKey { return partKey{*tp.Topic, tp.Partition} }

// tp returns the partition of k.
func (k partKey) tp() kafka.TopicPartition {
	return kafka.TopicPartition{Topic: &k.topic, Partition: k.partition}
}

// poll fetches records and hands them to their workers until ctx ends or
// the consumer fails. Each 20ms it stores the finished records' offsets
// and resumes the paused partitions whose queue has drained.
func (r *subRun) poll() error {
	lastFlush := time.Now()
	for r.ctx.Err() == nil {
		if time.Since(lastFlush) >= 20*time.Millisecond {
			for _, t := range r.trackers {
				t.flush()
			}
			r.resumeDrained()
			lastFlush = time.Now()
		}
		switch e := r.consumer.Poll(100).(type) {
		case *kafka.Message:
			r.dispatch(e)
		case *kafka.Stats:
			r.s.cfg.metrics.KafkaStatistics(r.s.cfg.topic(r.s.group), e.String())
		case kafka.Error:
			if e.IsFatal() {
				err := fmt.Errorf("kafkatransport: subscriber %s: %w", r.s.group, e)
				r.s.health.failed(err)
				return err
			}
			r.s.cfg.logger.Warn("kafkatransport subscriber", "group", r.s.group, "err", e)
		}
	}
	return nil
}

// dispatch queues m for its partition's worker, starting the worker if the
// partition has none, and pauses the partition when its queue is full.
func (r *subRun) dispatch(m *kafka.Message) {
	tp := m.TopicPartition
	t := r.trackers[*tp.Topic]
	w := r.workers[keyOf(tp)]
	if w == nil {
		ctx, cancel := context.WithCancel(r.ctx)
		w = &partWorker{r: r, tracker: t, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
		r.workers[keyOf(tp)] = w
		go w.run()
	}
	q := fetched{msg: m}
	t.start(&q.ticket, tp.Partition, int64(tp.Offset))
	w.mu.Lock()
	w.queue = append(w.queue, q)
	n := len(w.queue)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if n >= maxPartitionQueue && !w.paused {
		// librdkafka drops what it fetched of the partition beyond m, and
		// fetches again from there on resume.
		if err := r.consumer.Pause([]kafka.TopicPartition{keyOf(tp).tp()}); err != nil {
			r.s.cfg.logger.Warn("kafkatransport pause partition", "topic", *tp.Topic, "partition", tp.Partition, "err", err)
			return
		}
		w.paused = true
	}
}

// resumeDrained resumes the paused partitions whose queue holds at most
// half of maxPartitionQueue records.
func (r *subRun) resumeDrained() {
	for k, w := range r.workers {
		if w.paused && w.backlog() <= maxPartitionQueue/2 {
			r.resume(k, w)
		}
	}
}

func (r *subRun) resume(k partKey, w *partWorker) {
	w.paused = false
	if err := r.consumer.Resume([]kafka.TopicPartition{k.tp()}); err != nil {
		r.s.cfg.logger.Warn("kafkatransport resume partition", "topic", k.topic, "partition", k.partition, "err", err)
	}
}

// rebalance runs on the poll goroutine. Before partitions go to another
// member it lets their workers finish the record each is handling (at most
// 10s, or the drain timeout if shorter), leaving the queued ones, and
// commits, so that a rebalance redelivers as little as possible.
func (r *subRun) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	log := r.s.cfg.logger
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		log.Info("kafkatransport partitions assigned", "group", r.s.group, "partitions", e.Partitions)
	case kafka.RevokedPartitions:
		byTopic := map[string][]kafka.TopicPartition{}
		for _, tp := range e.Partitions {
			byTopic[*tp.Topic] = append(byTopic[*tp.Topic], tp)
		}
		if !c.AssignmentLost() {
			for topic, parts := range byTopic {
				r.trackers[topic].revoke(parts)
			}
			deadline := time.Now().Add(min(r.s.cfg.drainTimeout, 10*time.Second))
			for topic, parts := range byTopic {
				if r.ctx.Err() == nil && !r.trackers[topic].waitIdle(parts, time.Until(deadline)) {
					log.Warn("kafkatransport revoking partitions with an event in its handler", "topic", topic)
				}
				r.trackers[topic].flush()
			}
			if _, err := c.Commit(); err != nil && !isNoOffset(err) {
				log.Warn("kafkatransport commit on revoke", "group", r.s.group, "err", err)
			}
		}
		for topic, parts := range byTopic {
			r.trackers[topic].forget(parts)
		}
		for _, tp := range e.Partitions {
			if w := r.workers[keyOf(tp)]; w != nil {
				if w.paused {
					r.resume(keyOf(tp), w)
				}
				w.cancel()
				delete(r.workers, keyOf(tp))
			}
		}
		log.Info("kafkatransport partitions revoked", "group", r.s.group, "partitions", e.Partitions, "lost", c.AssignmentLost())
	}
	return nil
}

// waitIdle waits, at most timeout, until no record of any partition is
// neither finished nor abandoned, and reports whether none is.
func (r *subRun) waitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for _, t := range r.trackers {
		if !t.waitIdle(t.assigned(), time.Until(deadline)) {
			return false
		}
	}
	return true
}

// run handles the worker's records in order until its ctx ends. Once the
// partition is being revoked or the run stops, the records not started are
// abandoned, left uncommitted for the partition's next owner.
func (w *partWorker) run() {
	for {
		q, ok := w.next()
		if !ok {
			return
		}
		if w.ctx.Err() != nil || !w.tracker.current(&q.ticket) {
			w.tracker.abandon(&q.ticket)
			continue
		}
		if w.r.s.handle(w.ctx, w.r.base, w.r.dl, q.msg) {
			w.tracker.finish(&q.ticket)
		} else {
			w.tracker.abandon(&q.ticket)
		}
	}
}

// next returns the next queued record, waiting for one while ctx lasts.
// Records queued when ctx ends are still returned, to be abandoned.
func (w *partWorker) next() (fetched, bool) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			q := w.queue[0]
			w.queue[0] = fetched{}
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return q, true
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.ctx.Done():
			// Queued by dispatch before the cancel, which runs on the
			// same goroutine: nothing is queued after this check.
			w.mu.Lock()
			n := len(w.queue)
			w.mu.Unlock()
			if n == 0 {
				return fetched{}, false
			}
		}
	}
}

// backlog returns how many records wait in the worker's queue.
func (w *partWorker) backlog() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}
