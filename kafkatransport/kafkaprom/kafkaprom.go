// Package kafkaprom exposes the measurements of kafkatransport roles
// (kafkatransport.Metrics) as Prometheus metrics, under the kgrpc_ prefix:
//
//	kgrpc_server_requests_in_flight{service}          requests whose handler runs
//	kgrpc_server_requests_expired_total{service}      requests dropped unrun: deadline passed
//	kgrpc_client_calls_in_flight{service}             calls waiting for their reply
//	kgrpc_client_reply_wait_seconds{service}          from a request's send to its call's end
//	kgrpc_client_retries_total{service,reason}        requests sent again: unsent, unavailable, hedge
//	kgrpc_dead_letters_total{topic}                   records copied to a dead-letter topic
//	kgrpc_server_partitions_assigned{topic}           request partitions held; 0: standing by
//	kgrpc_consumer_lag{group,topic,partition}         records behind the partition's end
//	kgrpc_kafka_queue_messages{client}                records in librdkafka's producer queues
//	kgrpc_kafka_broker_rtt_seconds{client,broker,stat}               broker round trip
//	kgrpc_kafka_broker_internal_latency_seconds{client,broker,stat}  time in the producer queue
//
// The last four come from librdkafka's statistics (its
// statistics.interval.ms JSON, documented in librdkafka's STATISTICS.md),
// parsed at each scrape: stat is "avg" or "p99" of the last interval,
// client is the librdkafka client's name, broker the broker's
// "host:port/id". A client whose statistics stop coming (closed) drops out
// after a minute. Consumer lag is reported for the partitions a group
// consumer fetches once the group has committed an offset there (a
// ClientConn's reply consumer commits none, so its partition has no lag
// series). A consumer's round trips include the broker's fetch wait.
//
// NewCircuits exports a breaker.Breaker's state, read at each scrape:
//
//	kgrpc_client_circuit_state{service}            0 closed, 1 half-open, 2 open
//	kgrpc_client_calls_shed_total{service,reason}  calls failed at once: CIRCUIT_OPEN, OVERLOADED
//
// Give one Metrics to every role of a unit with kafkatransport.WithMetrics
// and register it once:
//
//	m := kafkaprom.New()
//	reg.MustRegister(m)
//	srv, err := kafkatransport.NewServer(brokers, kafkatransport.WithMetrics(m))
package kafkaprom

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// staleAfter is how long a client's last statistics are reported after
// they stop coming.
const staleAfter = time.Minute

// Metrics implements kafkatransport.Metrics, kafkatransport.RetryMetrics
// and prometheus.Collector.
type Metrics struct {
	inFlight  *prometheus.GaugeVec
	expired   *prometheus.CounterVec
	calls     *prometheus.GaugeVec
	replyWait *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	dead      *prometheus.CounterVec
	assigned  *prometheus.GaugeVec

	mu      sync.Mutex
	clients map[string]clientStats // by librdkafka client name
	now     func() time.Time
}

// clientStats is the last statistics of one librdkafka client, parsed
// by Collect: the transport calls KafkaStatistics on its poll loops.
type clientStats struct {
	at    time.Time
	group string
	doc   string
}

var (
	lagDesc = prometheus.NewDesc("kgrpc_consumer_lag",
		"Records between a consumer's committed offset and the end of a partition it fetches (librdkafka consumer_lag).",
		[]string{"group", "topic", "partition"}, nil)
	queueDesc = prometheus.NewDesc("kgrpc_kafka_queue_messages",
		"Records waiting in a librdkafka client's producer queues (msg_cnt).", []string{"client"}, nil)
	rttDesc = prometheus.NewDesc("kgrpc_kafka_broker_rtt_seconds",
		"Round-trip time of requests to a broker over the last statistics interval (librdkafka rtt).",
		[]string{"client", "broker", "stat"}, nil)
	latencyDesc = prometheus.NewDesc("kgrpc_kafka_broker_internal_latency_seconds",
		"Time records waited in the producer queue before being sent to a broker, over the last statistics interval (librdkafka int_latency).",
		[]string{"client", "broker", "stat"}, nil)
)

// New returns Metrics with nothing measured yet.
func New() *Metrics {
	return &Metrics{
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kgrpc_server_requests_in_flight",
			Help: "Requests whose handler a kafkatransport server runs."}, []string{"service"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kgrpc_server_requests_expired_total",
			Help: "Requests a kafkatransport server dropped without running them because their deadline had passed."}, []string{"service"}),
		calls: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kgrpc_client_calls_in_flight",
			Help: "Calls a kafkatransport client sent and waits for."}, []string{"service"}),
		replyWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kgrpc_client_reply_wait_seconds",
			Help:    "Time from sending a request to the end of its call (its reply, deadline, cancellation or failure).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"service"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kgrpc_client_retries_total",
			Help: "Requests a kafkatransport client sent again for a call, by reason: unsent (never reached the broker), unavailable (the server answered Unavailable) or hedge (no reply within the hedge delay)."},
			[]string{"service", "reason"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kgrpc_dead_letters_total",
			Help: "Records copied to a dead-letter topic, by the record's own topic."}, []string{"topic"}),
		assigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kgrpc_server_partitions_assigned",
			Help: "Partitions of its request topic a kafkatransport server instance holds; 0: it stands by (more instances than partitions)."}, []string{"topic"}),
		clients: map[string]clientStats{},
		now:     time.Now,
	}
}

// RequestStarted implements kafkatransport.Metrics.
func (m *Metrics) RequestStarted(service string) { m.inFlight.WithLabelValues(service).Inc() }

// RequestEnded implements kafkatransport.Metrics.
func (m *Metrics) RequestEnded(service string) { m.inFlight.WithLabelValues(service).Dec() }

// RequestExpired implements kafkatransport.Metrics.
func (m *Metrics) RequestExpired(service string) { m.expired.WithLabelValues(service).Inc() }

// CallStarted implements kafkatransport.Metrics.
func (m *Metrics) CallStarted(service string) { m.calls.WithLabelValues(service).Inc() }

// CallEnded implements kafkatransport.Metrics.
func (m *Metrics) CallEnded(service string, wait time.Duration, _ bool) {
	m.calls.WithLabelValues(service).Dec()
	m.replyWait.WithLabelValues(service).Observe(wait.Seconds())
}

// CallRetried implements kafkatransport.RetryMetrics.
func (m *Metrics) CallRetried(service, reason string) {
	m.retries.WithLabelValues(service, reason).Inc()
}

// DeadLettered implements kafkatransport.Metrics.
func (m *Metrics) DeadLettered(topic string) { m.dead.WithLabelValues(topic).Inc() }

// PartitionsAssigned implements kafkatransport.Metrics.
func (m *Metrics) PartitionsAssigned(topic string, n int) {
	m.assigned.WithLabelValues(topic).Set(float64(n))
}

// statistics is the part of librdkafka's statistics JSON reported.
type statistics struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	MsgCnt  int64  `json:"msg_cnt"`
	Brokers map[string]struct {
		NodeID     int32  `json:"nodeid"`
		Rtt        window `json:"rtt"`
		IntLatency window `json:"int_latency"`
	} `json:"brokers"`
	Topics map[string]struct {
		Partitions map[string]struct {
			Partition   int32  `json:"partition"`
			ConsumerLag int64  `json:"consumer_lag"`
			FetchState  string `json:"fetch_state"`
		} `json:"partitions"`
	} `json:"topics"`
}

// window is a librdkafka rolling window, in microseconds.
type window struct {
	Avg int64 `json:"avg"`
	P99 int64 `json:"p99"`
	Cnt int64 `json:"cnt"`
}

// KafkaStatistics implements kafkatransport.Metrics. It keeps the
// document, read at the next scrape; one without a client name is
// ignored.
func (m *Metrics) KafkaStatistics(group, doc string) {
	name := clientName(doc)
	if name == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[name] = clientStats{at: m.now(), group: group, doc: doc}
}

// clientName returns the client name of a statistics document, its first
// field, without reading the rest.
func clientName(doc string) string {
	dec := json.NewDecoder(strings.NewReader(doc))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	if k, err := dec.Token(); err != nil || k != "name" {
		return ""
	}
	name, _ := dec.Token()
	s, _ := name.(string)
	return s
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.inFlight.Describe(ch)
	m.expired.Describe(ch)
	m.calls.Describe(ch)
	m.replyWait.Describe(ch)
	m.retries.Describe(ch)
	m.dead.Describe(ch)
	m.assigned.Describe(ch)
	ch <- lagDesc
	ch <- queueDesc
	ch <- rttDesc
	ch <- latencyDesc
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.inFlight.Collect(ch)
	m.expired.Collect(ch)
	m.calls.Collect(ch)
	m.replyWait.Collect(ch)
	m.retries.Collect(ch)
	m.dead.Collect(ch)
	m.assigned.Collect(ch)
	m.mu.Lock()
	now := m.now()
	clients := make(map[string]clientStats, len(m.clients))
	for name, c := range m.clients {
		if now.Sub(c.at) > staleAfter {
			delete(m.clients, name)
			continue
		}
		clients[name] = c
	}
	m.mu.Unlock()
	lags := map[[3]string]int64{} // a partition two clients report counts once
	for name, c := range clients {
		var s statistics
		if err := json.Unmarshal([]byte(c.doc), &s); err != nil {
			continue
		}
		if s.Type == "producer" {
			ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(s.MsgCnt), name)
		}
		for bname, b := range s.Brokers {
			if b.NodeID < 0 || b.Rtt.Cnt == 0 {
				continue // a bootstrap or coordinator alias, or idle
			}
			ch <- prometheus.MustNewConstMetric(rttDesc, prometheus.GaugeValue, micros(b.Rtt.Avg), name, bname, "avg")
			ch <- prometheus.MustNewConstMetric(rttDesc, prometheus.GaugeValue, micros(b.Rtt.P99), name, bname, "p99")
			if s.Type == "producer" && b.IntLatency.Cnt > 0 {
				ch <- prometheus.MustNewConstMetric(latencyDesc, prometheus.GaugeValue, micros(b.IntLatency.Avg), name, bname, "avg")
				ch <- prometheus.MustNewConstMetric(latencyDesc, prometheus.GaugeValue, micros(b.IntLatency.P99), name, bname, "p99")
			}
		}
		if s.Type != "consumer" {
			continue
		}
		for topic, t := range s.Topics {
			for _, p := range t.Partitions {
				if p.Partition < 0 || p.ConsumerLag < 0 || p.FetchState == "none" || p.FetchState == "stopped" {
					continue
				}
				lags[[3]string{c.group, topic, strconv.Itoa(int(p.Partition))}] = p.ConsumerLag
			}
		}
	}
	for k, lag := range lags {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), k[0], k[1], k[2])
	}
}

// micros converts microseconds to seconds.
func micros(us int64) float64 { return float64(us) / 1e6 }
