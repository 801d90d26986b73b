package kafkatransport_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// With Guards on both sides, a call of a method the client's unit may call
// runs and its handler sees the calling unit; one it may not call is
// answered PermissionDenied without running; and a client with no Guard,
// whose request is not sealed, gets no answer (it is dead-lettered).
func TestGuardedCalls(t *testing.T) {
	e := newEnv(t)
	ring, keys, err := trust.Generate(time.Now(), "caller", "echo")
	if err != nil {
		t.Fatal(err)
	}
	policy := trust.Policy{Owners: map[string]string{"kgrpc.testing.v1": "echo"},
		Calls: map[string][]string{"caller": {testingv1.EchoService_Echo_FullMethodName}}}
	guard := func(unit string) kafkatransport.Option {
		g, err := trust.NewGuard(keys[unit], ring, policy)
		if err != nil {
			t.Fatal(err)
		}
		return kafkatransport.WithGuard(g)
	}
	impl := newEcho("a")
	callers := make(chan string, 10)
	seeCaller := kafkatransport.WithUnaryServerInterceptors(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ri, _ := kafkatransport.RequestFromContext(ctx)
		callers <- ri.Caller
		return h(ctx, req)
	})
	e.serve(impl, guard("echo"), seeCaller)
	c := testingv1.NewEchoServiceKafkaClient(e.dial(guard("caller")))
	if _, err := c.Echo(ctxTimeout(t, 30*time.Second), &testingv1.EchoRequest{Message: "hi"}); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if got := <-callers; got != "caller" {
		t.Fatalf("the handler saw caller %q", got)
	}
	_, err = c.Sleep(ctxTimeout(t, 30*time.Second), &testingv1.SleepRequest{Id: "denied", DurationMs: 1})
	if status.Code(err) != codes.PermissionDenied || impl.startedCount("denied") != 0 {
		t.Fatalf("Sleep = %v (ran %d times), want PermissionDenied without running", err, impl.startedCount("denied"))
	}
	plain := testingv1.NewEchoServiceKafkaClient(e.dial())
	_, err = plain.Echo(ctxTimeout(t, 3*time.Second), &testingv1.EchoRequest{Message: "unsealed"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unsealed Echo = %v, want no answer", err)
	}
	letters := e.readRecords(e.prefix+testingv1.EchoServiceKafkaTopic+".dlq", 1)
	if hs := headerMap(letters[0]); hs["dlq-error"] != "not a sealed value" {
		t.Errorf("dead letter reason %q", hs["dlq-error"])
	}
}

// Watch reads every authentic event of a topic from a point in time, in
// every watcher, skips a forged one, and says when it has caught up.
func TestWatch(t *testing.T) {
	e := newEnv(t)
	ring, keys, err := trust.Generate(time.Now(), "owner", "reader")
	if err != nil {
		t.Fatal(err)
	}
	policy := trust.Policy{Owners: map[string]string{"kgrpc.testing.v1": "owner"}}
	guard := func(unit string) kafkatransport.Option {
		g, err := trust.NewGuard(keys[unit], ring, policy)
		if err != nil {
			t.Fatal(err)
		}
		return kafkatransport.WithGuard(g)
	}
	pub, err := kafkatransport.NewPublisher(e.brokers, e.common(), guard("owner"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	since := time.Now().Add(-time.Minute)
	for i := range 3 {
		if err := kafkatransport.Publish(ctxTimeout(t, 30*time.Second), pub, testingv1.PingedKafkaEvent, &testingv1.Pinged{Id: "a", Seq: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	forged, _ := proto.Marshal(&testingv1.Pinged{Id: "a", Seq: 99})
	produceTo(t, e.rawProducer(), e.prefix+testingv1.PingedKafkaTopic, 0, []byte("a"), forged,
		kafka.Header{Key: "ev-type", Value: []byte("kgrpc.testing.v1.Pinged")})

	// Two watchers, as two instances: each sees all three authentic events.
	for w := range 2 {
		got := make(chan int64, 10)
		caught := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kafkatransport.Watch(ctx, e.brokers, testingv1.PingedKafkaEvent, since, func(_ context.Context, p *testingv1.Pinged) error {
				got <- p.GetSeq()
				return nil
			}, func() { close(caught) }, e.common(), guard("reader"))
		}()
		select {
		case <-caught:
		case err := <-done:
			t.Fatalf("watcher %d: Watch = %v before catching up", w, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("watcher %d not caught up in 30s", w)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("watcher %d: Watch = %v", w, err)
		}
		close(got)
		var seqs []int64
		for s := range got {
			seqs = append(seqs, s)
		}
		if len(seqs) != 3 || seqs[0] != 0 || seqs[2] != 2 {
			t.Fatalf("watcher %d saw %v, want [0 1 2] (the forged 99 skipped)", w, seqs)
		}
	}
}

// With Guards, streams open only for methods the client's unit may call,
// the handler sees the calling unit, and a frame sealed by another unit
// for the stream (one the policy lets call the method too) is ignored: a
// stream belongs to the unit that opened it.
func TestGuardedStreams(t *testing.T) {
	e := newEnv(t)
	ring, keys, err := trust.Generate(time.Now(), "caller", "echo", "intruder")
	if err != nil {
		t.Fatal(err)
	}
	bidi := testingv1.EchoService_BidiStream_FullMethodName
	policy := trust.Policy{Owners: map[string]string{"kgrpc.testing.v1": "echo"},
		Calls: map[string][]string{"caller": {bidi}, "intruder": {bidi}}}
	guardOf := func(unit string) kafkatransport.Guard {
		g, err := trust.NewGuard(keys[unit], ring, policy)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	type opened struct{ id, caller string }
	opens := make(chan opened, 10)
	seeCaller := kafkatransport.WithStreamServerInterceptors(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ri, _ := kafkatransport.RequestFromContext(ss.Context())
		opens <- opened{ri.ID, ri.Caller}
		return h(srv, ss)
	})
	srv, err := kafkatransport.NewServer(e.brokers, e.common(), testReplyTopics, kafkatransport.WithGuard(guardOf("echo")), seeCaller)
	if err != nil {
		t.Fatal(err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("a"))
	e.run(srv)
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithGuard(guardOf("caller"))))

	stream, err := c.BidiStream(ctxTimeout(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(msg string) {
		t.Helper()
		if err := stream.Send(&testingv1.BidiStreamRequest{Message: msg}); err != nil {
			t.Fatalf("Send %s: %v", msg, err)
		}
		resp, err := stream.Recv()
		if err != nil || resp.GetMessage() != msg {
			t.Fatalf("Recv after %s = %v, %v", msg, resp, err)
		}
	}
	roundTrip("m0")
	o := <-opens
	if o.caller != "caller" {
		t.Fatalf("the handler saw caller %q", o.caller)
	}
	// The intruder seals the stream's next message (seq 2) to the server's
	// inbox: were it taken, the client's own seq 2 would be dropped as a
	// duplicate and the server would answer "forged".
	value, _ := proto.Marshal(&testingv1.BidiStreamRequest{Message: "forged"})
	frame, _ := proto.Marshal(&kafkav1.StreamFrame{Id: o.id, Kind: kafkav1.StreamFrame_KIND_MESSAGE, Seq: 2, FromClient: true})
	inbox := e.prefix + "kgrpc.replies"
	forged := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &inbox, Partition: kafkatransport.InboxPartitionForTest(srv)},
		Value:          value,
		Headers:        []kafka.Header{{Key: "kgrpc-stream", Value: frame}},
	}
	if err := guardOf("intruder").SealRequest(bidi, forged); err != nil {
		t.Fatal(err)
	}
	produceTo(t, e.rawProducer(), inbox, forged.TopicPartition.Partition, nil, forged.Value, forged.Headers...)
	time.Sleep(300 * time.Millisecond) // let the server read it first
	roundTrip("m1")
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
	}

	// A method the caller may not call: refused before any handler runs.
	cs, err := c.ClientStream(ctxTimeout(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CloseAndRecv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ClientStream = %v, want PermissionDenied", err)
	}
	select {
	case o := <-opens:
		t.Fatalf("a handler ran for a refused stream: %v", o)
	default:
	}
}
