package breaker_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/breaker"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// echo answers Echo and fails Fail with the code asked for.
type echo struct {
	testingv1.UnimplementedEchoServiceServer
}

func (echo) Echo(_ context.Context, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	return &testingv1.EchoResponse{Message: req.GetMessage()}, nil
}

func (echo) Fail(_ context.Context, req *testingv1.FailRequest) (*testingv1.FailResponse, error) {
	return nil, status.Error(codes.Code(req.GetCode()), req.GetMessage())
}

// quickGroup makes a restarted server join its group at once.
var quickGroup = kafka.ConfigMap{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

// TestOverKafka runs the breaker on a client of a real (kfake, or
// KAFKA_BROKERS) broker: business errors of a live server keep the circuit
// closed; with the server stopped, calls time out until the circuit opens,
// then fail at once; once the server is back, a probe closes it.
func TestOverKafka(t *testing.T) {
	brokers, prefix := kafkatest.Brokers(t), kafkatest.TopicPrefix(t)
	common := kafkatransport.WithOptions(kafkatransport.WithTopicPrefix(prefix), kafkatransport.WithKafkaConfig(quickGroup))
	serve := func() (stop func()) {
		srv, err := kafkatransport.NewServer(brokers, common)
		if err != nil {
			t.Fatal(err)
		}
		testingv1.RegisterEchoServiceKafkaServer(srv, echo{})
		return kafkatest.Serve(t, srv)
	}
	const openFor = time.Second
	b := newBreaker(t, breaker.WithFailures(3), breaker.WithOpenFor(openFor))
	conn := kafkatest.Dial(t, brokers, common,
		kafkatransport.WithUnaryClientInterceptors(b.UnaryClientInterceptor()),
		kafkatransport.WithStreamClientInterceptors(b.StreamClientInterceptor()))
	client := testingv1.NewEchoServiceKafkaClient(conn)
	echoCall := func(timeout time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		_, err := client.Echo(ctx, &testingv1.EchoRequest{Message: "hi"})
		return time.Since(start), err
	}
	const service = "kgrpc.testing.v1.EchoService"

	stop := serve()
	if _, err := echoCall(10 * time.Second); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	for range 5 {
		_, err := client.Fail(context.Background(), &testingv1.FailRequest{Code: int32(codes.FailedPrecondition), Message: "no"})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Fail: %v", err)
		}
	}
	if s := b.States()[service]; s != breaker.StateClosed {
		t.Fatalf("after business errors: %v, want closed", s)
	}

	stop()
	for i := range 3 {
		if _, err := echoCall(300 * time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d to a stopped server: %v, want DeadlineExceeded", i, err)
		}
	}
	if s := b.States()[service]; s != breaker.StateOpen {
		t.Fatalf("after 3 timeouts: %v, want open", s)
	}
	var took []time.Duration
	for range 50 {
		d, err := echoCall(300 * time.Millisecond)
		if breaker.Reason(err) != breaker.ReasonCircuitOpen {
			t.Fatalf("call on the open circuit: %v", err)
		}
		took = append(took, d)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("figure: breaker over kfake: 50 refused calls, p50 %v, max %v", took[25], took[49])
	if took[49] > 100*time.Millisecond {
		t.Errorf("slowest refusal %v, want well under 100ms", took[49])
	}
	_, err := client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{})
	if breaker.Reason(err) != breaker.ReasonCircuitOpen {
		t.Errorf("stream on the open circuit: %v", err)
	}

	back := time.Now()
	serve()
	deadline := back.Add(30 * time.Second)
	for {
		_, err := echoCall(2 * time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call succeeded within 30s of the server's return: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("figure: breaker over kfake: first success %v after the server's return (open for %v)", time.Since(back).Round(time.Millisecond), openFor)
	if s := b.States()[service]; s != breaker.StateClosed {
		t.Fatalf("after a successful probe: %v, want closed", s)
	}
}
