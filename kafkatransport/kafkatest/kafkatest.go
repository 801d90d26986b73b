package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/kafkatransport/embedkafka"
)

// EnvBrokers is the environment variable naming the bootstrap servers of a
// real Kafka cluster to test against instead of an in-process broker.
const EnvBrokers = "KAFKA_BROKERS"

// EnvLog is the environment variable that, set to "debug", "info", "warn" or
// "error", makes in-process brokers log at that level to stderr. Unset, they
// log nothing.
const EnvLog = "KAFKATEST_LOG"

// Brokers returns the bootstrap servers tests should use: $KAFKA_BROKERS when
// set, else the address of an in-process broker started for t and closed when
// t and its subtests have finished.
func Brokers(t testing.TB) string {
	t.Helper()
	if b := os.Getenv(EnvBrokers); b != "" {
		return b
	}
	return Embedded(t, embedkafka.Config{}).Addr()
}

// Embedded starts an in-process broker configured by cfg, regardless of
// KAFKA_BROKERS, and closes it when t has finished. Use it for tests about
// the embedded broker itself, such as restarts on a data directory. A nil
// cfg.Logger is replaced by one that honours KAFKATEST_LOG.
func Embedded(t testing.TB, cfg embedkafka.Config) *embedkafka.Broker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logger()
	}
	b, err := embedkafka.Start(cfg)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TopicPrefix returns a prefix unique to this run of t, such as
// "t-testechoroundtrip-3f9a1c-", for the topics and consumer groups the test
// creates. It holds only characters legal in topic names. On a real broker
// (KAFKA_BROKERS), the topics are deleted when t has finished.
func TopicPrefix(t testing.TB) string {
	t.Helper()
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("kafkatest: random prefix: %v", err)
	}
	prefix := "t-" + sanitize(t.Name()) + "-" + hex.EncodeToString(rnd[:]) + "-"
	if b := os.Getenv(EnvBrokers); b != "" {
		CleanupTopics(t, b, prefix)
	}
	return prefix
}

// CleanupTopics deletes, once t has finished, the topics on brokers whose
// names start with prefix. A real broker outlives its tests: without this,
// every run leaves its topics behind, and a broker with thousands of
// partitions slows down, and skews benchmarks, over a day of runs. Call it
// before starting what creates the topics, so that it runs after their
// cleanup. Failures are logged, not fatal: the test's own outcome stands.
func CleanupTopics(t testing.TB, brokers, prefix string) {
	t.Cleanup(func() { deleteTopics(t, brokers, prefix) })
}

// deleteTopics deletes the topics whose names start with prefix.
func deleteTopics(t testing.TB, brokers, prefix string) {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": brokers, "log_level": 3})
	if err != nil {
		t.Logf("kafkatest: delete topics %s*: %v", prefix, err)
		return
	}
	defer admin.Close()
	md, err := admin.GetMetadata(nil, true, 10_000)
	if err != nil {
		t.Logf("kafkatest: delete topics %s*: %v", prefix, err)
		return
	}
	var names []string
	for name := range md.Topics {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.DeleteTopics(ctx, names)
	if err != nil {
		t.Logf("kafkatest: delete topics %s*: %v", prefix, err)
		return
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError && r.Error.Code() != kafka.ErrUnknownTopicOrPart {
			t.Logf("kafkatest: delete topic %s: %v", r.Topic, r.Error)
		}
	}
}

// maxNameLen bounds the test-name part of a prefix, leaving most of Kafka's
// 249 characters per topic name to the caller.
const maxNameLen = 48

// sanitize lowercases name and replaces every run of characters other than
// [a-z0-9] with one '-'. It avoids '.' and '_', which Kafka treats as
// colliding in metric names.
func sanitize(name string) string {
	var sb strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			sb.WriteRune(r)
			dash = false
			continue
		}
		if !dash && sb.Len() > 0 {
			sb.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(sb.String(), "-")
	if len(s) > maxNameLen {
		s = strings.TrimRight(s[:maxNameLen], "-")
	}
	if s == "" {
		s = "test"
	}
	return s
}

// logger returns the broker logger selected by KAFKATEST_LOG.
func logger() *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(os.Getenv(EnvLog)) {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}
