package kafkatransport_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkaprom"
)

// An instance beyond the request topic's partitions holds none and stands
// by: it says so in kgrpc_server_partitions_assigned at once and in a
// warning once that lasts, rather than sitting silent, while the other
// serves.
func TestStandbyInstanceIsReported(t *testing.T) {
	e := newEnv(t)
	type instance struct {
		warned  *warnings
		metrics *kafkaprom.Metrics
		reg     *prometheus.Registry
	}
	var instances []instance
	for range 2 {
		in := instance{warned: &warnings{}, metrics: kafkaprom.New(), reg: prometheus.NewRegistry()}
		in.reg.MustRegister(in.metrics)
		e.serve(newEcho("x"), kafkatransport.WithPartitions(1), kafkatransport.WithMetrics(in.metrics),
			kafkatransport.WithLogger(slog.New(in.warned)))
		instances = append(instances, in)
	}
	assigned := func(in instance) (float64, bool) {
		mfs, err := in.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "kgrpc_server_partitions_assigned" && len(mf.GetMetric()) == 1 {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		a, aok := assigned(instances[0])
		b, bok := assigned(instances[1])
		standby, serving := instances[0], instances[1]
		if a == 1 {
			standby, serving = instances[1], instances[0]
		}
		if aok && bok && a+b == 1 && warnedOf(standby.warned, standbyWarning) {
			if warnedOf(serving.warned, standbyWarning) {
				t.Error("the serving instance warned that it stands by")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions assigned: %v (%v) and %v (%v); want 1 and 0, the one with 0 warning %q", a, aok, b, bok, standbyWarning)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	if _, err := c.Echo(ctxTimeout(t, 30*time.Second), &testingv1.EchoRequest{Message: "served"}); err != nil {
		t.Fatalf("the serving instance: %v", err)
	}
}

// standbyWarning is logged once an instance has held nothing for 10s.
const standbyWarning = "kafkatransport instance holds no partition of its request topic and stands by: its group has more members than the topic has partitions"

// warnedOf reports whether w holds the warning msg.
func warnedOf(w *warnings, msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.msgs, msg)
}
