package kafkatransport

import (
	"context"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"
)

// Watch reads every event of spec, on every partition of its topic, from
// the first record at or after since, and runs h on each one after another
// until ctx ends; then it returns nil. Unlike a Subscriber it belongs to no
// consumer group and commits nothing: every instance that watches reads
// every event, which is what state kept in each instance needs (a
// gateway's view of revoked tokens, a cache). It creates the topic when
// missing. caughtUp, when not nil, is called once every partition has been
// read to the end it had when Watch began (at once for an empty topic).
//
// A record that does not decode, or that the Guard (WithGuard) does not
// authenticate as produced by the event's owner, is skipped and logged (one
// line per 10s at most, with the count):
// nothing is dead-lettered, since every watcher sees the same record. An
// error of h is logged, and the watch goes on. Partitions added to the
// topic after Watch began are not read until it runs again.
func Watch[T proto.Message](ctx context.Context, brokers string, spec EventSpec[T], since time.Time, h func(context.Context, T) error, caughtUp func(), opts ...SubscriberOption) error {
	cfg, err := newConfig(brokers, opts, SubscriberOption.applySubscriber)
	if err != nil {
		return err
	}
	defer cfg.forwardLogs()()
	topic := cfg.topic(spec.topic())
	c, err := kafka.NewConsumer(cfg.consumerConfig("kgrpc-watch-"+cfg.instanceID+"-"+runID(), kafka.ConfigMap{"enable.auto.commit": false}))
	if err != nil {
		return fmt.Errorf("kafkatransport: watch %s: %w", spec.Name, err)
	}
	defer c.Close()
	admin, err := kafka.NewAdminClientFromConsumer(c)
	if err != nil {
		return fmt.Errorf("kafkatransport: watch %s: %w", spec.Name, err)
	}
	defer admin.Close()
	if err := newTopicEnsurer(admin, &cfg).ensure(ctx, cfg.partitions, topic); err != nil {
		return fmt.Errorf("kafkatransport: watch %s: %w", spec.Name, err)
	}
	startCtx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	var n int
	if err := retry(startCtx, func() (err error) {
		n, err = partitionCount(admin, topic, timeoutMs(startCtx, 5*time.Second))
		return err
	}); err != nil {
		return fmt.Errorf("kafkatransport: watch %s: %w", spec.Name, err)
	}
	// Where each partition starts (the first offset at or after since) and
	// ends now.
	parts := make([]kafka.TopicPartition, n)
	for i := range parts {
		parts[i] = kafka.TopicPartition{Topic: &topic, Partition: int32(i), Offset: kafka.Offset(since.UnixMilli())}
	}
	var starts []kafka.TopicPartition
	if err := retry(startCtx, func() (err error) {
		starts, err = c.OffsetsForTimes(parts, timeoutMs(startCtx, 5*time.Second))
		return err
	}); err != nil {
		return fmt.Errorf("kafkatransport: watch %s: offsets since %v: %w", spec.Name, since, err)
	}
	ends := map[int32]int64{}
	for i, p := range starts {
		var high int64
		if err := retry(startCtx, func() (err error) {
			_, high, err = c.QueryWatermarkOffsets(topic, p.Partition, timeoutMs(startCtx, 5*time.Second))
			return err
		}); err != nil {
			return fmt.Errorf("kafkatransport: watch %s: %w", spec.Name, err)
		}
		if p.Offset < 0 { // no record at or after since: start at the end
			starts[i].Offset = kafka.Offset(high)
		}
		if int64(starts[i].Offset) < high {
			ends[p.Partition] = high
		}
	}
	if err := c.Assign(starts); err != nil {
		return fmt.Errorf("kafkatransport: watch %s: %w", spec.Name, err)
	}
	cancel()
	caught := func() {
		if caughtUp != nil {
			caughtUp()
			caughtUp = nil
		}
	}
	if len(ends) == 0 {
		caught()
	}
	cfg.logger.Info("kafkatransport watching", "topic", topic, "partitions", n, "since", since)
	stop := func() bool { return ctx.Err() != nil }
	var (
		lastLog time.Time
		skipped int // since the last log line
	)
	handle := func(ev kafka.Event) (bool, error) {
		m, ok := ev.(*kafka.Message)
		if !ok {
			return false, nil
		}
		p, off := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		if end, ok := ends[p]; ok && off+1 >= end {
			delete(ends, p)
			defer func() {
				if len(ends) == 0 {
					caught()
				}
			}()
		}
		if err := watchRecord(ctx, &cfg, spec, m, h); err != nil {
			// At most one line per 10s: whoever can produce forged
			// records must not flood the logs of every watcher.
			skipped++
			if now := time.Now(); now.Sub(lastLog) >= 10*time.Second {
				cfg.logger.Warn("kafkatransport watch: skipping records", "topic", topic, "partition", p, "offset", off, "err", err, "skipped", skipped)
				lastLog, skipped = now, 0
			}
		}
		return false, nil
	}
	for !stop() {
		if err := pollBurst(c, stop, handle); err != nil {
			return err
		}
	}
	return nil
}

// watchRecord authenticates (with a Guard) and decodes one record of a
// watch and runs h on it.
func watchRecord[T proto.Message](ctx context.Context, cfg *config, spec EventSpec[T], m *kafka.Message, h func(context.Context, T) error) error {
	if g := cfg.guard; g != nil {
		if _, err := g.OpenEvent(spec.Name, m); err != nil {
			return fmt.Errorf("not authentic: %w", err)
		}
	}
	if t, ok := header(m.Headers, hdrEventType); ok && string(t) != spec.Name {
		return fmt.Errorf("record of type %q on the topic of %s", t, spec.Name)
	}
	ev := spec.New()
	if err := proto.Unmarshal(m.Value, ev); err != nil {
		return fmt.Errorf("undecodable %s: %w", spec.Name, err)
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.defaultTimeout)
	defer cancel()
	return h(hctx, ev)
}
