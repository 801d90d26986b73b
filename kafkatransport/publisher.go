package kafkatransport

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
)

// Publisher publishes events. Generated <Event>Publisher types wrap it; one
// Publisher serves any number of event types. It is safe for concurrent use.
type Publisher struct {
	cfg      config
	producer *kafka.Producer
	admin    *kafka.AdminClient
	topics   *topicEnsurer
	stopLogs func()
	// specs caches PublishEvent's EventSpecOf by message full name.
	specs sync.Map // protoreflect.FullName → EventSpec[proto.Message]
}

// NewPublisher returns a publisher for the brokers, or the error of an
// invalid option.
func NewPublisher(brokers string, opts ...PublisherOption) (*Publisher, error) {
	cfg, err := newConfig(brokers, opts, PublisherOption.applyPublisher)
	if err != nil {
		return nil, err
	}
	stopLogs := cfg.forwardLogs()
	p, err := kafka.NewProducer(cfg.producerConfig(publisherDefaults))
	if err != nil {
		stopLogs()
		return nil, fmt.Errorf("kafkatransport: new producer: %w", err)
	}
	a, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		p.Close()
		stopLogs()
		return nil, fmt.Errorf("kafkatransport: new admin client: %w", err)
	}
	pub := &Publisher{cfg: cfg, producer: p, admin: a, stopLogs: stopLogs}
	pub.topics = newTopicEnsurer(a, &pub.cfg)
	// Per-message delivery channels carry the reports; drain the rest.
	go readDeliveries(p, &pub.cfg, nil)
	return pub, nil
}

// CreateTopics creates, where missing, the topic of every event message
// type declared in files (each message with the (kgrpc.kafka.v1.event)
// option, nested ones included), with the publisher's partitions, so that
// subscribers in any language find them from the start rather than after
// the first event of each type. ctx bounds it. A unit calls it as it
// starts, with the files of the events it owns:
//
//	pub.CreateTopics(ctx, usersv1.File_shop_users_v1_events_proto)
func (p *Publisher) CreateTopics(ctx context.Context, files ...protoreflect.FileDescriptor) error {
	var topics []string
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			md := ms.Get(i)
			if opts, _ := proto.GetExtension(md.Options(), kafkav1.E_Event).(*kafkav1.EventOptions); opts != nil {
				spec := EventSpec[proto.Message]{Name: string(md.FullName()), Topic: opts.GetTopic()}
				topics = append(topics, p.cfg.topic(spec.topic()))
			}
			walk(md.Messages())
		}
	}
	for _, f := range files {
		walk(f.Messages())
	}
	if len(topics) == 0 {
		return nil
	}
	if err := p.topics.ensure(ctx, p.cfg.partitions, topics...); err != nil {
		return fmt.Errorf("kafkatransport: %w", err)
	}
	return nil
}

// eventIDKey is the context key of WithEventID.
type eventIDKey struct{}

// WithEventID returns ctx with the ev-id that Publish gives the event it
// publishes with it, instead of a new one ("<instance>-<nanoseconds, base
// 36>"): for a publisher that may publish one event again, such as an
// outbox relay that crashed between publishing and deleting it, so that
// both copies carry the same ev-id and a subscriber can tell the second
// for what it is. id must be unique among the events of its topic; ""
// leaves Publish to make one.
func WithEventID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, eventIDKey{}, id)
}

// Close flushes queued events (bounded by ctx) and closes the publisher.
func (p *Publisher) Close(ctx context.Context) error {
	left := p.producer.Flush(timeoutMs(ctx, 10*time.Second))
	p.admin.Close()
	p.producer.Close()
	p.stopLogs()
	if left > 0 {
		return fmt.Errorf("kafkatransport: %d events not delivered before close", left)
	}
	return nil
}

// Publish publishes ev on its topic, keyed per spec, and returns once the
// broker has acknowledged it, or ctx ends first (the event may then still be
// delivered). The trace context goes along (see WithTracerProvider).
func Publish[T proto.Message](ctx context.Context, p *Publisher, spec EventSpec[T], ev T) (err error) {
	value, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("kafkatransport: marshal %s: %w", spec.Name, err)
	}
	topic := p.cfg.topic(spec.topic())
	if err := p.topics.ensure(ctx, p.cfg.partitions, topic); err != nil {
		return fmt.Errorf("kafkatransport: %w", err)
	}
	id, _ := ctx.Value(eventIDKey{}).(string)
	if id == "" {
		id = p.cfg.instanceID + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	headers := make([]kafka.Header, 2, 5)
	headers[0] = kafka.Header{Key: hdrEventType, Value: []byte(spec.Name)}
	headers[1] = kafka.Header{Key: hdrEventID, Value: []byte(id)}
	if p.cfg.tracer != nil {
		var span trace.Span
		ctx, span = p.cfg.startSend(ctx, topic, id, &headers)
		defer func() { endSpan(span, err) }()
	} else if md, ok := metadata.FromOutgoingContext(ctx); ok {
		headers = traceHeaders(headers, md)
	}
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Value:          value,
		Headers:        headers,
	}
	if spec.Key != nil {
		msg.Key = spec.Key(ev)
	}
	if g := p.cfg.guard; g != nil {
		if err := g.SealEvent(spec.Name, msg); err != nil {
			return fmt.Errorf("kafkatransport: seal %s: %w", spec.Name, err)
		}
	}
	delivered := make(chan kafka.Event, 1)
	if err := p.producer.Produce(msg, delivered); err != nil {
		return fmt.Errorf("kafkatransport: publish %s: %w", spec.Name, err)
	}
	select {
	case e := <-delivered:
		if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
			return fmt.Errorf("kafkatransport: publish %s: %w", spec.Name, m.TopicPartition.Error)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafkatransport: publish %s: %w", spec.Name, ctx.Err())
	}
}
