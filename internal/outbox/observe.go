package outbox

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
)

// traceFormat is how an event's trace context is kept: W3C traceparent
// and tracestate.
var traceFormat propagation.TraceContext

// traceOf returns the trace context of ctx as stored with an event: its
// traceparent, and a newline and its tracestate when it has one; "" when
// ctx carries no span.
func traceOf(ctx context.Context) string {
	c := propagation.MapCarrier{}
	traceFormat.Inject(ctx, c)
	if ts := c["tracestate"]; ts != "" {
		return c["traceparent"] + "\n" + ts
	}
	return c["traceparent"]
}

// withTrace returns ctx carrying the remote span of a stored trace
// context, ctx itself when there is none.
func withTrace(ctx context.Context, stored string) context.Context {
	if stored == "" {
		return ctx
	}
	parent, state, _ := strings.Cut(stored, "\n")
	return traceFormat.Extract(ctx, propagation.MapCarrier{"traceparent": parent, "tracestate": state})
}

// scrapeTimeout bounds the query behind one scrape of the outbox metrics.
const scrapeTimeout = 2 * time.Second

var (
	backlogDesc = prometheus.NewDesc("kgrpc_outbox_backlog", "Events in the outbox, written and not yet published.", nil, nil)
	ageDesc     = prometheus.NewDesc("kgrpc_outbox_oldest_age_seconds", "Age of the oldest event in the outbox; 0 when it is empty.", nil, nil)
)

// NewCollector returns a Prometheus collector of the outbox in db:
// kgrpc_outbox_backlog and kgrpc_outbox_oldest_age_seconds, read at each
// scrape. A scrape whose query fails reports neither. Give it a pool that
// reads (SQLite's readers), not the relay's writer connection, which a
// scrape would otherwise wait for and hold.
func NewCollector(db *sql.DB) prometheus.Collector { return collector{db} }

type collector struct{ db *sql.DB }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- ageDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var n int64
	var oldest sql.NullInt64
	if err := c.db.QueryRowContext(ctx, `SELECT count(*), min(created_at) FROM outbox`).Scan(&n, &oldest); err != nil {
		return
	}
	age := 0.0
	if oldest.Valid {
		age = max(0, time.Since(time.UnixMilli(oldest.Int64)).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age)
}
