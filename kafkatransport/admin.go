package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// adminTimeout bounds an admin request whose context has no deadline, so
// that a start against unreachable brokers fails with a clear error instead
// of waiting forever.
const adminTimeout = 30 * time.Second

// topicEnsurer creates missing topics once per topic and name.
type topicEnsurer struct {
	admin *kafka.AdminClient
	cfg   *config
	mu    sync.Mutex
	done  map[string]bool
}

func newTopicEnsurer(admin *kafka.AdminClient, cfg *config) *topicEnsurer {
	return &topicEnsurer{admin: admin, cfg: cfg, done: map[string]bool{}}
}

// ensure creates each missing topic with the given partition count. Topics
// that exist already are left as they are.
func (e *topicEnsurer) ensure(ctx context.Context, partitions int, topics ...string) error {
	return e.ensureWith(ctx, partitions, nil, topics...)
}

// ensureCalls creates each missing topic of calls (request or reply
// topics) with the given partition count and the call retention
// (WithCallRetention).
func (e *topicEnsurer) ensureCalls(ctx context.Context, partitions int, topics ...string) error {
	ms := strconv.FormatInt(e.cfg.callRetention.Milliseconds(), 10)
	return e.ensureWith(ctx, partitions, map[string]string{"retention.ms": ms}, topics...)
}

// ensureWith creates each missing topic with the given partition count and
// topic configuration.
func (e *topicEnsurer) ensureWith(ctx context.Context, partitions int, conf map[string]string, topics ...string) error {
	e.mu.Lock()
	var specs []kafka.TopicSpecification
	for _, t := range topics {
		if !e.done[t] {
			specs = append(specs, kafka.TopicSpecification{Topic: t, NumPartitions: partitions, ReplicationFactor: e.cfg.replicationFactor, Config: conf})
		}
	}
	e.mu.Unlock()
	if len(specs) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	res, err := e.admin.CreateTopics(ctx, specs)
	if err != nil {
		return fmt.Errorf("create topics %v on %s (are the brokers reachable?): %w", topics, e.cfg.brokers, err)
	}
	var errs []error
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range res {
		code := r.Error.Code()
		if code == kafka.ErrNoError || code == kafka.ErrTopicAlreadyExists {
			e.done[r.Topic] = true
			continue
		}
		errs = append(errs, fmt.Errorf("create topic %q: %w", r.Topic, r.Error))
	}
	return errors.Join(errs...)
}

// partitionCount returns the number of partitions of topic.
func partitionCount(src metadataSource, topic string, timeoutMs int) (int, error) {
	md, err := src.GetMetadata(&topic, false, timeoutMs)
	if err != nil {
		return 0, fmt.Errorf("metadata of %q: %w", topic, err)
	}
	t, ok := md.Topics[topic]
	if !ok || t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("metadata of %q: topic not found (%v)", topic, t.Error)
	}
	return len(t.Partitions), nil
}

// retry runs fn until it succeeds or ctx ends, backing off from 20ms to 1s,
// and returns fn's last error. It covers what a freshly created topic lacks
// for a moment on real Kafka: metadata and partition leaders.
func retry(ctx context.Context, fn func() error) error {
	backoff := 20 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// timeoutMs returns the time left before ctx's deadline in milliseconds, or
// def when it has none.
func timeoutMs(ctx context.Context, def time.Duration) int {
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left < time.Millisecond {
			left = time.Millisecond
		}
		return int(left / time.Millisecond)
	}
	return int(def / time.Millisecond)
}
