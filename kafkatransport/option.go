package kafkatransport

import (
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
)

// Option configures a ClientConn, Server, Publisher or Subscriber. Each option
// documents its default and the roles it applies to; a role ignores options
// that do not concern it.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the union of every role's settings.
type config struct {
	brokers            string
	kafka              kafka.ConfigMap
	logger             *slog.Logger
	topicPrefix        string
	partitions         int
	replicationFactor  int
	replyTopic         string
	replyPartitions    int
	replyPartition     int32
	defaultTimeout     time.Duration
	clientInterceptors []grpc.UnaryClientInterceptor
	serverInterceptors []grpc.UnaryServerInterceptor
	maxConcurrency     int
	drainTimeout       time.Duration
	instanceID         string
	eventAttempts      int
	eventBackoff       time.Duration
	eventMaxBackoff    time.Duration
	logs               chan kafka.LogEvent
}

func newConfig(brokers string, opts []Option) config {
	c := config{
		brokers:           brokers,
		logger:            slog.New(slog.DiscardHandler),
		partitions:        6,
		replicationFactor: -1,
		replyTopic:        "kgrpc.replies",
		replyPartitions:   16,
		replyPartition:    -1,
		defaultTimeout:    30 * time.Second,
		maxConcurrency:    256,
		drainTimeout:      30 * time.Second,
		eventAttempts:     4,
		eventBackoff:      100 * time.Millisecond,
		eventMaxBackoff:   5 * time.Second,
		logs:              make(chan kafka.LogEvent, 256),
	}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.instanceID == "" {
		c.instanceID = newInstanceID()
	}
	return c
}

// WithKafkaConfig passes librdkafka properties (TLS, SASL, timeouts, ...)
// through to every producer, consumer and admin client the role creates. They
// are applied over the low-latency defaults documented in doc.go, so any
// default can be overridden. Properties that only producers or only consumers
// understand are given only to those. Default: none. All roles.
func WithKafkaConfig(m kafka.ConfigMap) Option {
	return optionFunc(func(c *config) {
		if c.kafka == nil {
			c.kafka = kafka.ConfigMap{}
		}
		for k, v := range m {
			c.kafka[k] = v
		}
	})
}

// WithLogger sets the structured logger. Default: a logger that discards
// everything. All roles.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithTopicPrefix prefixes every topic and consumer group name the role uses,
// so that several environments (or test runs) can share one cluster.
// Default: "". All roles.
func WithTopicPrefix(p string) Option {
	return optionFunc(func(c *config) { c.topicPrefix = p })
}

// WithPartitions sets the partition count of request and event topics that
// the role creates because they are missing. Existing topics are left alone.
// Default: 6. All roles.
func WithPartitions(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.partitions = n
		}
	})
}

// WithReplicationFactor sets the replication factor of topics the role
// creates. Default: -1, the broker's default.replication.factor. All roles.
func WithReplicationFactor(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 || n == -1 {
			c.replicationFactor = n
		}
	})
}

// WithReplyTopic sets the shared reply topic and the partition count it is
// created with when missing. Default: "kgrpc.replies" with 16 partitions.
// Client.
func WithReplyTopic(topic string, partitions int) Option {
	return optionFunc(func(c *config) {
		if topic != "" {
			c.replyTopic = topic
		}
		if partitions > 0 {
			c.replyPartitions = partitions
		}
	})
}

// WithReplyPartition pins the reply partition this client reads, for example
// to a StatefulSet ordinal, so that no two instances share one. Instances
// sharing a partition still work: each ignores the replies of the other.
// Default: a random partition of the reply topic. Client.
func WithReplyPartition(p int32) Option {
	return optionFunc(func(c *config) {
		if p >= 0 {
			c.replyPartition = p
		}
	})
}

// WithDefaultTimeout bounds calls whose context has no deadline (client), and
// handlers whose request carries no deadline (server), and each attempt of an
// event handler (subscriber). Default: 30s.
func WithDefaultTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.defaultTimeout = d
		}
	})
}

// WithUnaryClientInterceptors adds grpc-go unary client interceptors. The
// first is the outermost, as with grpc.WithChainUnaryInterceptor; the
// *grpc.ClientConn argument they receive is nil. Default: none. Client.
func WithUnaryClientInterceptors(ics ...grpc.UnaryClientInterceptor) Option {
	return optionFunc(func(c *config) { c.clientInterceptors = append(c.clientInterceptors, ics...) })
}

// WithUnaryServerInterceptors adds grpc-go unary server interceptors. The
// first is the outermost, as with grpc.ChainUnaryInterceptor. Default: none.
// Server.
func WithUnaryServerInterceptors(ics ...grpc.UnaryServerInterceptor) Option {
	return optionFunc(func(c *config) { c.serverInterceptors = append(c.serverInterceptors, ics...) })
}

// WithMaxConcurrency limits the handlers a server runs at once, over all its
// services and partitions; past it the server stops fetching until one ends.
// Default: 256. Server.
func WithMaxConcurrency(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxConcurrency = n
		}
	})
}

// WithDrainTimeout bounds how long a stopping server or subscriber waits for
// in-flight handlers before cancelling their contexts. Default: 30s. Server,
// Subscriber.
func WithDrainTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.drainTimeout = d
		}
	})
}

// WithInstanceID names this process in logs, correlation ids and the
// client.id of its Kafka clients. Default: a random id. All roles.
func WithInstanceID(id string) Option {
	return optionFunc(func(c *config) {
		if id != "" {
			c.instanceID = id
		}
	})
}

// WithEventRetry sets how often a subscriber runs a failing event handler
// before dead-lettering the record (attempts, at least 1) and the backoff
// before the first retry, doubling up to maxBackoff. Default: 4 attempts,
// 100ms, 5s. Subscriber.
func WithEventRetry(attempts int, backoff, maxBackoff time.Duration) Option {
	return optionFunc(func(c *config) {
		if attempts > 0 {
			c.eventAttempts = attempts
		}
		if backoff > 0 {
			c.eventBackoff = backoff
		}
		if maxBackoff > 0 {
			c.eventMaxBackoff = maxBackoff
		}
	})
}
