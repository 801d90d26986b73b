package kafkaprom

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// consumerStats and producerStats are librdkafka statistics documents cut
// down to the fields read (and a few others), in the shape librdkafka
// emits them.
const consumerStats = `{"name": "kgrpc-a#consumer-3", "client_id": "kgrpc-a", "type": "consumer", "ts": 1, "msg_cnt": 0,
 "brokers": {
  "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1, "rtt": {"avg": 0, "p99": 0, "cnt": 0}},
  "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "rtt": {"avg": 100500, "p99": 130000, "cnt": 40}, "int_latency": {"avg": 0, "p99": 0, "cnt": 0}}
 },
 "topics": {"orders": {"topic": "orders", "partitions": {
  "0": {"partition": 0, "fetch_state": "active", "consumer_lag": 7},
  "1": {"partition": 1, "fetch_state": "active", "consumer_lag": -1},
  "2": {"partition": 2, "fetch_state": "none", "consumer_lag": 3},
  "-1": {"partition": -1, "fetch_state": "none", "consumer_lag": -1}
 }}}}`

const producerStats = `{"name": "kgrpc-a#producer-1", "type": "producer", "msg_cnt": 5,
 "brokers": {"127.0.0.1:9092/1": {"nodeid": 1, "rtt": {"avg": 2000, "p99": 4000, "cnt": 10}, "int_latency": {"avg": 50, "p99": 90, "cnt": 10}}},
 "topics": {}}`

func TestKafkaStatistics(t *testing.T) {
	m := New()
	now := time.Now()
	m.now = func() time.Time { return now }
	m.KafkaStatistics("orders", consumerStats)
	m.KafkaStatistics("", producerStats)
	m.KafkaStatistics("", `{"type": "consumer"}`) // no name: ignored
	m.KafkaStatistics("", `not json`)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	want := `
# HELP kgrpc_consumer_lag Records between a consumer's committed offset and the end of a partition it fetches (librdkafka consumer_lag).
# TYPE kgrpc_consumer_lag gauge
kgrpc_consumer_lag{group="orders",partition="0",topic="orders"} 7
# HELP kgrpc_kafka_broker_internal_latency_seconds Time records waited in the producer queue before being sent to a broker, over the last statistics interval (librdkafka int_latency).
# TYPE kgrpc_kafka_broker_internal_latency_seconds gauge
kgrpc_kafka_broker_internal_latency_seconds{broker="127.0.0.1:9092/1",client="kgrpc-a#producer-1",stat="avg"} 5e-05
kgrpc_kafka_broker_internal_latency_seconds{broker="127.0.0.1:9092/1",client="kgrpc-a#producer-1",stat="p99"} 9e-05
# HELP kgrpc_kafka_broker_rtt_seconds Round-trip time of requests to a broker over the last statistics interval (librdkafka rtt).
# TYPE kgrpc_kafka_broker_rtt_seconds gauge
kgrpc_kafka_broker_rtt_seconds{broker="127.0.0.1:9092/1",client="kgrpc-a#consumer-3",stat="avg"} 0.1005
kgrpc_kafka_broker_rtt_seconds{broker="127.0.0.1:9092/1",client="kgrpc-a#consumer-3",stat="p99"} 0.13
kgrpc_kafka_broker_rtt_seconds{broker="127.0.0.1:9092/1",client="kgrpc-a#producer-1",stat="avg"} 0.002
kgrpc_kafka_broker_rtt_seconds{broker="127.0.0.1:9092/1",client="kgrpc-a#producer-1",stat="p99"} 0.004
# HELP kgrpc_kafka_queue_messages Records waiting in a librdkafka client's producer queues (msg_cnt).
# TYPE kgrpc_kafka_queue_messages gauge
kgrpc_kafka_queue_messages{client="kgrpc-a#producer-1"} 5
`
	names := []string{"kgrpc_consumer_lag", "kgrpc_kafka_broker_internal_latency_seconds", "kgrpc_kafka_broker_rtt_seconds", "kgrpc_kafka_queue_messages"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// A client whose statistics stopped a minute ago is dropped.
	now = now.Add(staleAfter + time.Second)
	m.KafkaStatistics("", producerStats)
	if n, err := testutil.GatherAndCount(reg, "kgrpc_consumer_lag"); err != nil || n != 0 {
		t.Fatalf("after the consumer's statistics went stale: %d lag series, %v; want none", n, err)
	}
	if n, err := testutil.GatherAndCount(reg, "kgrpc_kafka_queue_messages"); err != nil || n != 1 {
		t.Fatalf("the producer's queue series: %d, %v; want 1", n, err)
	}
}

func TestCallsAndRequests(t *testing.T) {
	m := New()
	m.RequestStarted("svc")
	m.RequestStarted("svc")
	m.RequestEnded("svc")
	m.RequestExpired("svc")
	m.CallStarted("svc")
	m.CallEnded("svc", 3*time.Millisecond, true)
	m.CallRetried("svc", "hedge")
	m.CallRetried("svc", "hedge")
	m.DeadLettered("orders")
	m.PartitionsAssigned("shop.products.v1.ProductService", 3)
	m.PartitionsAssigned("shop.products.v1.ProductService", 0) // the last report stands
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"kgrpc_server_requests_in_flight", m.inFlight, 1},
		{"kgrpc_server_requests_expired_total", m.expired, 1},
		{"kgrpc_client_calls_in_flight", m.calls, 0},
		{"kgrpc_client_retries_total", m.retries.WithLabelValues("svc", "hedge"), 2},
		{"kgrpc_dead_letters_total", m.dead, 1},
		{"kgrpc_server_partitions_assigned", m.assigned, 0},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.replyWait); n != 1 {
		t.Errorf("kgrpc_client_reply_wait_seconds series = %d, want 1", n)
	}
}
