package kafkatransport_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

// The standard health service of grpc-go, server and client, works over
// Kafka unchanged: registered with its generated function on the default
// topic, and called with grpc_health_v1.NewHealthClient(conn).
func TestHealthProtocol(t *testing.T) {
	e := newEnv(t)
	srv, err := kafkatransport.NewServer(e.brokers, e.common(), testReplyTopics)
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, hs)
	testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("a"))
	echo := testingv1.EchoService_ServiceDesc.ServiceName
	hs.SetServingStatus(echo, grpc_health_v1.HealthCheckResponse_SERVING)
	e.run(srv)
	c := grpc_health_v1.NewHealthClient(e.dial())

	const (
		serving    = grpc_health_v1.HealthCheckResponse_SERVING
		notServing = grpc_health_v1.HealthCheckResponse_NOT_SERVING
	)
	// In order: a step may change the statuses the next ones see.
	tests := []struct {
		name    string
		set     func()
		service string
		want    grpc_health_v1.HealthCheckResponse_ServingStatus
		code    codes.Code
	}{
		{"overall", nil, "", serving, codes.OK},
		{"a service", nil, echo, serving, codes.OK},
		{"a service set not serving", func() { hs.SetServingStatus(echo, notServing) }, echo, notServing, codes.OK},
		{"overall is its own", nil, "", serving, codes.OK},
		{"overall set not serving", func() { hs.SetServingStatus("", notServing) }, "", notServing, codes.OK},
		{"an unknown service", nil, "no.such.Service", 0, codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.set != nil {
				tc.set()
			}
			resp, err := c.Check(ctxTimeout(t, 20*time.Second), &grpc_health_v1.HealthCheckRequest{Service: tc.service})
			if status.Code(err) != tc.code || resp.GetStatus() != tc.want {
				t.Fatalf("Check(%q) = %v, %v; want %v, code %v", tc.service, resp.GetStatus(), err, tc.want, tc.code)
			}
		})
	}
	t.Run("List", func(t *testing.T) {
		resp, err := c.List(ctxTimeout(t, 20*time.Second), &grpc_health_v1.HealthListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetStatuses()
		if len(got) != 2 || got[""].GetStatus() != notServing || got[echo].GetStatus() != notServing {
			t.Fatalf("List = %v, want %q and %q NOT_SERVING", got, "", echo)
		}
	})
	t.Run("Watch streams the status and its changes", func(t *testing.T) {
		w, err := c.Watch(ctxTimeout(t, 20*time.Second), &grpc_health_v1.HealthCheckRequest{Service: echo})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != notServing {
			t.Fatalf("first Watch message = %v, %v; want NOT_SERVING", resp, err)
		}
		hs.SetServingStatus(echo, serving)
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != serving {
			t.Fatalf("Watch message after the change = %v, %v; want SERVING", resp, err)
		}
		hs.SetServingStatus(echo, notServing) // as the steps above left it
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != notServing {
			t.Fatalf("Watch message after the second change = %v, %v; want NOT_SERVING", resp, err)
		}
	})
	t.Run("GetServiceInfo", func(t *testing.T) {
		info := srv.GetServiceInfo()
		h, ok := info[grpc_health_v1.Health_ServiceDesc.ServiceName]
		if len(info) != 2 || !ok || len(h.Methods) != 3 {
			t.Fatalf("GetServiceInfo = %v, want the echo and health services, health with 3 methods", info)
		}
		watch := h.Methods[slices.IndexFunc(h.Methods, func(m grpc.MethodInfo) bool { return m.Name == "Watch" })]
		if !watch.IsServerStream || watch.IsClientStream || h.Metadata != "grpc/health/v1/health.proto" {
			t.Fatalf("health service info = %+v", h)
		}
	})
}

// Units sharing a cluster each serve the health service on a topic of
// their own (HealthSpec), and each answers for itself.
func TestHealthSpecPerUnit(t *testing.T) {
	e := newEnv(t)
	units := map[string]grpc_health_v1.HealthCheckResponse_ServingStatus{
		"alpha": grpc_health_v1.HealthCheckResponse_SERVING,
		"beta":  grpc_health_v1.HealthCheckResponse_NOT_SERVING,
	}
	for unit, st := range units {
		srv, err := kafkatransport.NewServer(e.brokers, e.common(), testReplyTopics)
		if err != nil {
			t.Fatal(err)
		}
		hs := health.NewServer()
		hs.SetServingStatus("", st)
		grpc_health_v1.RegisterHealthServer(srv, hs)
		srv.Describe(kafkatransport.HealthSpec(unit))
		e.run(srv)
	}
	conn := e.dial()
	for unit, want := range units {
		t.Run(unit, func(t *testing.T) {
			c := grpc_health_v1.NewHealthClient(conn.Service(kafkatransport.HealthSpec(unit)))
			resp, err := c.Check(ctxTimeout(t, 20*time.Second), &grpc_health_v1.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != want {
				t.Fatalf("Check = %v, %v; want %v", resp.GetStatus(), err, want)
			}
		})
	}
	if !e.topicExists("grpc.health.v1.Health.alpha") || e.topicExists("grpc.health.v1.Health") {
		t.Error("want the per-unit topic grpc.health.v1.Health.alpha, and no default health topic")
	}
}
