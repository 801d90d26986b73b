package kafkatransport

import (
	"errors"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
)

// DefaultPartitions is the partition count of the request and event topics
// a Server, Publisher or Subscriber creates when WithPartitions is not given.
const DefaultPartitions = 6

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

// newConfig returns the defaults with opts applied by apply, the method of
// the role's option type (ServerOption.applyServer, ...). It returns the
// errors of every invalid option together.
func newConfig[O any](brokers string, opts []O, apply func(O, *config) error) (config, error) {
	c := config{
		brokers:           brokers,
		logger:            slog.New(slog.DiscardHandler),
		partitions:        DefaultPartitions,
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
	}
	var errs []error
	for _, o := range opts {
		if any(o) == nil {
			errs = append(errs, errors.New("kafkatransport: nil option"))
			continue
		}
		if err := apply(o, &c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	if c.instanceID == "" {
		c.instanceID = newInstanceID()
	}
	c.logs = make(chan kafka.LogEvent, 256)
	return c, nil
}
