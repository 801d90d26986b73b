package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// EventInfo describes the record an event handler is running for.
type EventInfo struct {
	// Topic, Partition and Offset locate the record.
	Topic     string
	Partition int32
	Offset    int64
	// ID is the event id the publisher gave it.
	ID string
	// Time is the record's timestamp.
	Time time.Time
	// Attempt counts the handler runs for this record, from 1.
	Attempt int
	// Producer is the unit that produced the record, as the subscriber's
	// Guard (WithGuard) authenticated it; empty without a Guard.
	Producer string
}

type eventInfoKey struct{}

// EventFromContext returns the record an event handler is running for.
func EventFromContext(ctx context.Context) (EventInfo, bool) {
	e, ok := ctx.Value(eventInfoKey{}).(EventInfo)
	return e, ok
}

// Subscriber consumes events as one consumer group, normally named after the
// subscribing service, so every instance of that service shares the work and
// each event reaches the service once (at-least-once). Records of one
// partition are handled in order, each partition by its own worker, so a
// slow partition does not hold up the others. A handler error is retried
// with backoff a bounded number of times; then, or at once for a record that
// cannot be decoded, the record goes to the group's dead-letter topic
// "<group>.dlq" with the error in its headers (whole, or as a stub without
// its value when it cannot go whole; see the package doc), and the
// subscriber moves on.
type Subscriber struct {
	cfg   config
	group string

	mu       sync.Mutex
	handlers map[string]eventHandler // by topic
	started  bool
	ready    chan struct{}
	health   health
}

// NewSubscriber returns a subscriber in consumer group group, or the error
// of an empty group or an invalid option. Subscribe handlers, then call Run.
func NewSubscriber(brokers, group string, opts ...SubscriberOption) (*Subscriber, error) {
	if group == "" {
		return nil, errors.New("kafkatransport: NewSubscriber: empty consumer group")
	}
	cfg, err := newConfig(brokers, opts, SubscriberOption.applySubscriber)
	if err != nil {
		return nil, err
	}
	return &Subscriber{
		cfg:      cfg,
		group:    group,
		handlers: map[string]eventHandler{},
		ready:    make(chan struct{}),
		health:   health{stall: cfg.stallTimeout},
	}, nil
}

// eventHandler is the handler of one event topic: the event type's name
// and the function that decodes a record and runs the subscribed handler.
type eventHandler struct {
	name string
	run  func(ctx context.Context, m *kafka.Message) error
}

// errUndecodable marks a record that no retry can fix.
var errUndecodable = errors.New("undecodable event")

// Subscribe registers h for the events of spec. It panics when the topic has
// a handler already or Run has started.
func Subscribe[T proto.Message](s *Subscriber, spec EventSpec[T], h func(context.Context, T) error) {
	topic := s.cfg.topic(spec.topic())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("kafkatransport: Subscribe after Run")
	}
	if _, dup := s.handlers[topic]; dup {
		panic(fmt.Sprintf("kafkatransport: topic %q subscribed twice", topic))
	}
	s.handlers[topic] = eventHandler{name: spec.Name, run: func(ctx context.Context, m *kafka.Message) error {
		ev := spec.New()
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			return fmt.Errorf("%w: %s: %v", errUndecodable, spec.Name, err)
		}
		if t, ok := header(m.Headers, hdrEventType); ok && string(t) != spec.Name {
			return fmt.Errorf("%w: record of type %q on the topic of %s", errUndecodable, t, spec.Name)
		}
		return h(ctx, ev)
	}}
}

// DeadLetterTopic returns the subscriber's dead-letter topic.
func (s *Subscriber) DeadLetterTopic() string { return s.cfg.topic(s.group + ".dlq") }

// Ready is closed once Run has subscribed and starts fetching.
func (s *Subscriber) Ready() <-chan struct{} { return s.ready }

// Run creates missing event and dead-letter topics, then consumes until ctx
// ends. Each assigned partition has its own worker, which handles the
// partition's records in order, one at a time, so that a slow or stuck
// partition does not hold up the others. When ctx ends, each worker
// finishes the record it is handling (bounded by the drain timeout) and
// leaves the rest; offsets are committed, and Run returns nil. A fatal
// consumer error ends Run the same way and is returned.
func (s *Subscriber) Run(ctx context.Context) error {
	topics, err := startOnce(&s.mu, &s.started, s.handlers, "Run", "event subscribed")
	if err != nil {
		return err
	}
	defer s.cfg.forwardLogs()() // stops last, after every client closed

	producer, err := kafka.NewProducer(s.cfg.producerConfig(producerDefaults))
	if err != nil {
		return fmt.Errorf("kafkatransport: new producer: %w", err)
	}
	defer producer.Close()
	go readDeliveries(producer, &s.cfg, nil) // dead letters have delivery channels
	admin, err := kafka.NewAdminClientFromProducer(producer)
	if err != nil {
		return fmt.Errorf("kafkatransport: new admin client: %w", err)
	}
	defer admin.Close()
	ens := newTopicEnsurer(admin, &s.cfg)
	if err := ens.ensure(ctx, s.cfg.partitions, append([]string{s.DeadLetterTopic()}, topics...)...); err != nil {
		return fmt.Errorf("kafkatransport: %w", err)
	}
	consumer, err := kafka.NewConsumer(s.cfg.consumerConfig(s.cfg.topic(s.group), nil))
	if err != nil {
		return fmt.Errorf("kafkatransport: new consumer: %w", err)
	}
	defer closeConsumers(s.cfg.logger, []*kafka.Consumer{consumer}, func(int) string { return s.group })

	// Handlers outlive ctx for the drain; hardStop ends them after it.
	base, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	r := newSubRun(s, runCtx, base, consumer, producer)
	if err := consumer.SubscribeTopics(topics, r.rebalance); err != nil {
		return fmt.Errorf("kafkatransport: subscribe %v: %w", topics, err)
	}
	close(s.ready)
	s.cfg.logger.Info("kafkatransport subscriber running", "group", s.group, "topics", topics)

	runErr := r.poll()
	stopRun() // the workers leave the records they have not started
	if !r.waitIdle(s.cfg.drainTimeout) {
		s.cfg.logger.Warn("kafkatransport drain timeout: cancelling event handlers", "group", s.group)
		hardStop()
		r.waitIdle(5 * time.Second)
	}
	r.dl.close() // a handler that outlived the drain produces nothing now
	for _, t := range r.trackers {
		t.close()
	}
	if _, err := consumer.Commit(); err != nil && !isNoOffset(err) {
		s.cfg.logger.Warn("kafkatransport subscriber commit", "group", s.group, "err", err)
	}
	s.cfg.logger.Info("kafkatransport subscriber stopped", "group", s.group)
	return runErr
}

// Health returns nil while the subscriber makes progress, else why not: a
// partition whose oldest unfinished record has been in its handler, retries
// or dead-lettering for longer than the stall timeout (WithStallTimeout), a
// dead letter that could not be produced (until one is), or the fatal error
// that ended Run. It is nil before Run. Programs serve it on their
// readiness endpoint.
func (s *Subscriber) Health() error { return s.health.err() }

// handle runs the record's handler with bounded retries, then dead-letters
// it if it still fails. It reports whether the record is finished with. When
// ctx ends (the run stops, or the partition is revoked) between attempts or
// during the dead-lettering, it gives up and reports false: the record is
// then left uncommitted for the next owner of its partition.
func (s *Subscriber) handle(ctx, base context.Context, dl *deadLetterer, m *kafka.Message) bool {
	topic := *m.TopicPartition.Topic
	h := s.handlers[topic]
	info := EventInfo{Topic: topic, Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset), Time: m.Timestamp}
	if id, ok := header(m.Headers, hdrEventID); ok {
		info.ID = string(id)
	}
	hctx := base
	if md := traceMD(m.Headers); md != nil {
		hctx = metadata.NewIncomingContext(hctx, md)
	}
	backoff := s.cfg.eventBackoff
	var err error
	if s.cfg.tracer != nil {
		var span trace.Span
		hctx, span = s.cfg.startProcess(hctx, s.cfg.topic(s.group), m, info.ID)
		defer func() { endSpan(span, err) }()
	}
	if g := s.cfg.guard; g != nil {
		if info.Producer, err = g.OpenEvent(h.name, m); err != nil {
			s.cfg.logger.Warn("kafkatransport dead-lettering an event that is not authentic", "topic", topic, "offset", info.Offset, "err", err)
			return dl.send(ctx, deadLetter{topic: s.DeadLetterTopic(), msg: m, cause: fmt.Errorf("event not authentic: %w", err), attempts: 1, group: s.cfg.topic(s.group)})
		}
	}
	for attempt := 1; attempt <= s.cfg.eventAttempts; attempt++ {
		info.Attempt = attempt
		actx, cancel := context.WithTimeout(context.WithValue(hctx, eventInfoKey{}, info), s.cfg.defaultTimeout)
		err = s.safeCall(actx, h.run, m)
		cancel()
		if err == nil || errors.Is(err, errUndecodable) {
			break
		}
		s.cfg.logger.WarnContext(hctx, "kafkatransport event handler failed", "topic", topic, "offset", info.Offset, "attempt", attempt, "err", err)
		if attempt == s.cfg.eventAttempts {
			break
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(backoff*2, s.cfg.eventMaxBackoff)
	}
	if err == nil {
		return true
	}
	return dl.send(ctx, deadLetter{topic: s.DeadLetterTopic(), msg: m, cause: err, attempts: info.Attempt, group: s.cfg.topic(s.group)})
}

func (s *Subscriber) safeCall(ctx context.Context, h func(context.Context, *kafka.Message) error, m *kafka.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return h(ctx, m)
}
