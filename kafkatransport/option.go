package kafkatransport

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
)

// Options are typed by the roles they apply to, so that an option a
// constructor would ignore does not compile there: Dial takes ClientOption,
// NewServer ServerOption, NewPublisher PublisherOption and NewSubscriber
// SubscriberOption. An Option applies to every role; TopicOption,
// HandlerOption and TimeoutOption to the roles their documentation names.
// An invalid value makes the constructor return an error naming the option.

// ClientOption configures a ClientConn (Dial).
type ClientOption interface {
	applyClient(*config) error
}

// ServerOption configures a Server (NewServer).
type ServerOption interface {
	applyServer(*config) error
}

// PublisherOption configures a Publisher (NewPublisher).
type PublisherOption interface {
	applyPublisher(*config) error
}

// SubscriberOption configures a Subscriber (NewSubscriber).
type SubscriberOption interface {
	applySubscriber(*config) error
}

// Option configures every role: it is a ClientOption, a ServerOption, a
// PublisherOption and a SubscriberOption.
type Option interface {
	ClientOption
	ServerOption
	PublisherOption
	SubscriberOption
}

// setting is what every option does: change the config, or report why its
// value is invalid.
type setting func(*config) error

// run applies s; the zero value of an exported option type, which no
// With function returns, is refused rather than a nil call.
func (s setting) run(c *config) error {
	if s == nil {
		return errors.New("kafkatransport: zero-value option")
	}
	return s(c)
}

// option is an Option.
type option setting

func (o option) applyClient(c *config) error     { return o(c) }
func (o option) applyServer(c *config) error     { return o(c) }
func (o option) applyPublisher(c *config) error  { return o(c) }
func (o option) applySubscriber(c *config) error { return o(c) }

type clientOption setting

func (o clientOption) applyClient(c *config) error { return o(c) }

type serverOption setting

func (o serverOption) applyServer(c *config) error { return o(c) }

type subscriberOption setting

func (o subscriberOption) applySubscriber(c *config) error { return o(c) }

// TopicOption configures the roles that create request and event topics:
// Server, Publisher and Subscriber. It is not a ClientOption: a client
// creates only its reply topic (see WithReplyTopic).
type TopicOption struct{ set setting }

func (o TopicOption) applyServer(c *config) error     { return o.set.run(c) }
func (o TopicOption) applyPublisher(c *config) error  { return o.set.run(c) }
func (o TopicOption) applySubscriber(c *config) error { return o.set.run(c) }

// HandlerOption configures the roles that run handlers: Server and
// Subscriber.
type HandlerOption struct{ set setting }

func (o HandlerOption) applyServer(c *config) error     { return o.set.run(c) }
func (o HandlerOption) applySubscriber(c *config) error { return o.set.run(c) }

// TimeoutOption configures the roles that bound calls or handlers by time:
// ClientConn, Server and Subscriber.
type TimeoutOption struct{ set setting }

func (o TimeoutOption) applyClient(c *config) error     { return o.set.run(c) }
func (o TimeoutOption) applyServer(c *config) error     { return o.set.run(c) }
func (o TimeoutOption) applySubscriber(c *config) error { return o.set.run(c) }

// StreamOption configures the roles at either end of a stream: ClientConn
// and Server.
type StreamOption struct{ set setting }

func (o StreamOption) applyClient(c *config) error { return o.set.run(c) }
func (o StreamOption) applyServer(c *config) error { return o.set.run(c) }

// invalid returns the error of an option given a value it refuses.
func invalid(option string, value any, want string) error {
	return fmt.Errorf("kafkatransport: %s(%v): want %s", option, value, want)
}

// WithOptions bundles options into one, applied in order; for example the
// settings a program gives every role it creates. All roles.
func WithOptions(opts ...Option) Option {
	return option(func(c *config) error {
		var errs []error
		for _, o := range opts {
			if o == nil {
				errs = append(errs, errors.New("kafkatransport: WithOptions: nil option"))
				continue
			}
			errs = append(errs, o.applyServer(c)) // an Option does the same in every role
		}
		return errors.Join(errs...)
	})
}

// WithKafkaConfig passes librdkafka properties (TLS, SASL, timeouts, ...)
// through to every producer, consumer and admin client the role creates. They
// are applied over the low-latency defaults documented in doc.go, so any
// default can be overridden. Properties that only producers or only consumers
// understand are given only to those. Default: none. All roles.
func WithKafkaConfig(m kafka.ConfigMap) Option {
	return option(func(c *config) error {
		if c.kafka == nil {
			c.kafka = kafka.ConfigMap{}
		}
		for k, v := range m {
			c.kafka[k] = v
		}
		return nil
	})
}

// WithLogger sets the structured logger; it must not be nil. Default: a
// logger that discards everything. All roles.
func WithLogger(l *slog.Logger) Option {
	return option(func(c *config) error {
		if l == nil {
			return invalid("WithLogger", "nil", "a logger")
		}
		c.logger = l
		return nil
	})
}

// WithTopicPrefix prefixes every topic and consumer group name the role uses,
// so that several environments (or test runs) can share one cluster.
// Default: "". All roles.
func WithTopicPrefix(p string) Option {
	return option(func(c *config) error { c.topicPrefix = p; return nil })
}

// WithInstanceID names this process in logs, correlation ids and the
// client.id of its Kafka clients; it must not be empty. Default: a random
// id. All roles.
func WithInstanceID(id string) Option {
	return option(func(c *config) error {
		if id == "" {
			return invalid("WithInstanceID", `""`, "a non-empty id")
		}
		c.instanceID = id
		return nil
	})
}

// WithReplicationFactor sets the replication factor of topics the role
// creates (a client creates the reply topic): at least 1, or -1 for the
// broker's default.replication.factor. Default: -1. All roles.
func WithReplicationFactor(n int) Option {
	return option(func(c *config) error {
		if n < 1 && n != -1 {
			return invalid("WithReplicationFactor", n, "at least 1, or -1 for the broker's default")
		}
		c.replicationFactor = n
		return nil
	})
}

// DefaultCallRetention is the retention of the request and reply topics
// the transport creates, when WithCallRetention is not given.
const DefaultCallRetention = time.Hour

// WithCallRetention sets the retention (retention.ms) of the request topics
// a server creates and of the reply topic a client creates, when they are
// missing; it must be positive. Calls live for their deadline, so their
// records need not outlive it by much, and whatever they carry leaves the
// broker soon. Existing topics are left alone; dead-letter and event
// topics keep the broker's default. Default: DefaultCallRetention (1h).
// Server, Client (other roles ignore it).
func WithCallRetention(d time.Duration) Option {
	return option(positive("WithCallRetention", d, func(c *config) *time.Duration { return &c.callRetention }))
}

// WithPartitions sets the partition count, at least 1, of the request and
// event topics the role creates because they are missing. Existing topics
// are left alone. Default: DefaultPartitions (6). Server, Publisher,
// Subscriber.
func WithPartitions(n int) TopicOption {
	return TopicOption{func(c *config) error {
		if n < 1 {
			return invalid("WithPartitions", n, "at least 1")
		}
		c.partitions = n
		return nil
	}}
}

// WithDefaultTimeout bounds calls whose context has no deadline (client),
// handlers whose request carries no deadline (server), and each attempt of
// an event handler (subscriber). It must be positive. Default: 30s. Client,
// Server, Subscriber.
func WithDefaultTimeout(d time.Duration) TimeoutOption {
	return TimeoutOption{positive("WithDefaultTimeout", d, func(c *config) *time.Duration { return &c.defaultTimeout })}
}

// WithDrainTimeout bounds how long a stopping server or subscriber waits for
// in-flight handlers before cancelling their contexts. It must be positive.
// Default: 30s. Server, Subscriber.
func WithDrainTimeout(d time.Duration) HandlerOption {
	return HandlerOption{positive("WithDrainTimeout", d, func(c *config) *time.Duration { return &c.drainTimeout })}
}

// WithStallTimeout sets how long the oldest unfinished record of a
// partition (a request, or an event in its handler, retries or
// dead-lettering) may stay so before Health reports the server or
// subscriber not ready. It must be positive. Default: DefaultStallTimeout
// (30s). Server, Subscriber.
func WithStallTimeout(d time.Duration) HandlerOption {
	return HandlerOption{positive("WithStallTimeout", d, func(c *config) *time.Duration { return &c.stallTimeout })}
}

// positive returns the setting of option, which sets the duration field
// returns to d, refusing a d that is not positive.
func positive(option string, d time.Duration, field func(*config) *time.Duration) setting {
	return func(c *config) error {
		if d <= 0 {
			return invalid(option, d, "a positive duration")
		}
		*field(c) = d
		return nil
	}
}

// WithReplyTopic sets the shared reply topic, not empty, and the partition
// count, at least 1, it is created with when missing. Default:
// "kgrpc.replies" with 16 partitions. Client.
func WithReplyTopic(topic string, partitions int) ClientOption {
	return clientOption(func(c *config) error {
		if topic == "" || partitions < 1 {
			return invalid("WithReplyTopic", fmt.Sprintf("%q, %d", topic, partitions), "a topic name and at least 1 partition")
		}
		c.replyTopic, c.replyPartitions = topic, partitions
		return nil
	})
}

// WithReplyPartition pins the reply partition this client reads, for example
// to a StatefulSet ordinal, so that no two instances share one; -1 picks a
// random one. Instances sharing a partition still work: each ignores the
// replies of the other. A partition the reply topic does not have makes Dial
// fail. Default: -1. Client.
func WithReplyPartition(p int32) ClientOption {
	return clientOption(func(c *config) error {
		if p < -1 {
			return invalid("WithReplyPartition", p, "a partition (0 or more), or -1 for a random one")
		}
		c.replyPartition = p
		return nil
	})
}

// WithUnaryClientInterceptors adds grpc-go unary client interceptors. The
// first is the outermost, as with grpc.WithChainUnaryInterceptor; the
// *grpc.ClientConn argument they receive is nil. None may be nil. Default:
// none. Client.
func WithUnaryClientInterceptors(ics ...grpc.UnaryClientInterceptor) ClientOption {
	return clientOption(interceptors("WithUnaryClientInterceptors", ics, func(c *config) *[]grpc.UnaryClientInterceptor { return &c.clientInterceptors }))
}

// WithUnaryServerInterceptors adds grpc-go unary server interceptors. The
// first is the outermost, as with grpc.ChainUnaryInterceptor. None may be
// nil. Default: none. Server.
func WithUnaryServerInterceptors(ics ...grpc.UnaryServerInterceptor) ServerOption {
	return serverOption(interceptors("WithUnaryServerInterceptors", ics, func(c *config) *[]grpc.UnaryServerInterceptor { return &c.serverInterceptors }))
}

// WithStreamClientInterceptors adds grpc-go stream client interceptors,
// which wrap every NewStream. The first is the outermost, as with
// grpc.WithChainStreamInterceptor; the *grpc.ClientConn argument they
// receive is nil. None may be nil. Default: none. Client.
func WithStreamClientInterceptors(ics ...grpc.StreamClientInterceptor) ClientOption {
	return clientOption(interceptors("WithStreamClientInterceptors", ics, func(c *config) *[]grpc.StreamClientInterceptor { return &c.streamClientICs }))
}

// WithStreamServerInterceptors adds grpc-go stream server interceptors,
// which wrap every streaming method's handler. The first is the
// outermost, as with grpc.ChainStreamInterceptor. None may be nil.
// Default: none. Server.
func WithStreamServerInterceptors(ics ...grpc.StreamServerInterceptor) ServerOption {
	return serverOption(interceptors("WithStreamServerInterceptors", ics, func(c *config) *[]grpc.StreamServerInterceptor { return &c.streamServerICs }))
}

// WithStreamWindow sets how many messages of a stream the client or the
// server accepts from its peer before it grants more credit: with
// WithStreamWindowBytes, the bound of what a slow reader buffers, per
// stream. At least 1. Default: DefaultStreamWindow. Client and server.
func WithStreamWindow(n int) StreamOption {
	return StreamOption{func(c *config) error {
		if n < 1 {
			return invalid("WithStreamWindow", n, "at least 1")
		}
		c.streamWindow = uint64(n)
		return nil
	}}
}

// WithStreamWindowBytes sets how many bytes of messages of a stream the
// client or the server accepts from its peer before it grants more credit;
// a reader buffers at most that many bytes plus one message per stream
// (a message larger than the window still passes, alone) from a peer that
// announced a byte window of its own; a peer that did not (an older
// version, or one with 0 here) is held to WithStreamWindow only. 0 counts no
// bytes, leaving WithStreamWindow as the only bound. Default:
// DefaultStreamWindowBytes. Client and server.
func WithStreamWindowBytes(n int) StreamOption {
	return StreamOption{func(c *config) error {
		if n < 0 {
			return invalid("WithStreamWindowBytes", n, "at least 0")
		}
		c.streamWindowBytes = uint64(n)
		return nil
	}}
}

// WithStreamHeartbeat sets how long a stream may be idle in one direction
// before that side sends a heartbeat; a side that hears nothing from its
// peer for three times as long ends the stream (the client with
// Unavailable, the server by cancelling the handler's context). At least
// 10ms. Default: DefaultStreamHeartbeat. Client and server.
func WithStreamHeartbeat(d time.Duration) StreamOption {
	return StreamOption{func(c *config) error {
		if d < 10*time.Millisecond {
			return invalid("WithStreamHeartbeat", d, "at least 10ms")
		}
		c.streamHeartbeat = d
		return nil
	}}
}

// WithMaxStreams limits the streams a server holds at once; a stream
// opened beyond it ends at once with ResourceExhausted. Streams do not
// count against WithMaxConcurrency. At least 1. Default:
// DefaultMaxStreams. Server.
func WithMaxStreams(n int) ServerOption {
	return serverOption(func(c *config) error {
		if n < 1 {
			return invalid("WithMaxStreams", n, "at least 1")
		}
		c.maxStreams = n
		return nil
	})
}

// interceptors returns the setting of option, which appends ics to the
// list field returns, refusing nil interceptors.
func interceptors[I any](option string, ics []I, field func(*config) *[]I) setting {
	return func(c *config) error {
		for _, ic := range ics {
			if reflect.ValueOf(ic).IsNil() {
				return invalid(option, "nil", "no nil interceptor")
			}
		}
		*field(c) = append(*field(c), ics...)
		return nil
	}
}

// WithMaxConcurrency limits the requests a server runs at once, over all
// its services and partitions; at the limit the server stops fetching until
// one ends. Requests waiting behind an earlier request of their key do not
// count; each partition holds at most four times n of them, and past that
// the server pauses fetching that partition until half of them have run.
// At least 1. Default: 256. Server.
func WithMaxConcurrency(n int) ServerOption {
	return serverOption(func(c *config) error {
		if n < 1 {
			return invalid("WithMaxConcurrency", n, "at least 1")
		}
		c.maxConcurrency = n
		return nil
	})
}

// WithEventRetry sets how often a subscriber runs a failing event handler
// before dead-lettering the record (attempts, at least 1) and the backoff
// before the first retry (positive), doubling up to maxBackoff (at least
// backoff). Default: 4 attempts, 100ms, 5s. Subscriber.
func WithEventRetry(attempts int, backoff, maxBackoff time.Duration) SubscriberOption {
	return subscriberOption(func(c *config) error {
		if attempts < 1 || backoff <= 0 || maxBackoff < backoff {
			return invalid("WithEventRetry", fmt.Sprintf("%d, %v, %v", attempts, backoff, maxBackoff),
				"at least 1 attempt, a positive backoff and a maxBackoff of at least backoff")
		}
		c.eventAttempts, c.eventBackoff, c.eventMaxBackoff = attempts, backoff, maxBackoff
		return nil
	})
}
