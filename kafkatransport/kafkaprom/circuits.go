package kafkaprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kgrpc/platform/kafkatransport/breaker"
)

var (
	circuitStateDesc = prometheus.NewDesc("kgrpc_client_circuit_state",
		"State of a client's circuit breaker for a downstream service: 0 closed, 1 half-open, 2 open.",
		[]string{"service"}, nil)
	callsShedDesc = prometheus.NewDesc("kgrpc_client_calls_shed_total",
		"Calls a client failed at once without sending them: reason CIRCUIT_OPEN (the service's circuit is open or probing) or OVERLOADED (too many of its calls in flight).",
		[]string{"service", "reason"}, nil)
)

// Circuits is the Prometheus collector of a breaker.Breaker's state
// (kgrpc_client_circuit_state, kgrpc_client_calls_shed_total; see the
// package doc), read at each scrape. A service appears once the Breaker
// has seen a call of it.
type Circuits struct {
	b *breaker.Breaker
}

// NewCircuits returns the collector of b; register it once.
func NewCircuits(b *breaker.Breaker) *Circuits { return &Circuits{b: b} }

// Describe implements prometheus.Collector.
func (c *Circuits) Describe(ch chan<- *prometheus.Desc) {
	ch <- circuitStateDesc
	ch <- callsShedDesc
}

// Collect implements prometheus.Collector.
func (c *Circuits) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.b.Stats() {
		ch <- prometheus.MustNewConstMetric(circuitStateDesc, prometheus.GaugeValue, float64(s.State), s.Service)
		ch <- prometheus.MustNewConstMetric(callsShedDesc, prometheus.CounterValue, float64(s.ShedOpen), s.Service, breaker.ReasonCircuitOpen)
		ch <- prometheus.MustNewConstMetric(callsShedDesc, prometheus.CounterValue, float64(s.ShedOverloaded), s.Service, breaker.ReasonOverloaded)
	}
}
