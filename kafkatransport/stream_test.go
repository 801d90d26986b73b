package kafkatransport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

// The echo service's streaming methods (see echo.proto). streamSent counts
// the messages its handlers have sent, streamEnded records how each
// handler ended.

func (e *echo) ServerStream(req *testingv1.ServerStreamRequest, stream grpc.ServerStreamingServer[testingv1.ServerStreamResponse]) error {
	ctx := stream.Context()
	defer func() { e.streamEnded(ctx) }()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-in"); len(v) > 0 {
			_ = stream.SetHeader(metadata.Pairs("x-header", "h:"+v[0]))
			stream.SetTrailer(metadata.Pairs("x-trailer", "t:"+v[0]))
		}
	}
	for i := range req.GetCount() {
		if d := time.Duration(req.GetIntervalMs()) * time.Millisecond; i > 0 && d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := stream.Send(&testingv1.ServerStreamResponse{Message: req.GetMessage(), Payload: req.GetPayload(), Index: i, ServedBy: e.name}); err != nil {
			return err
		}
		e.sent.Add(1)
	}
	if c := req.GetFailCode(); c != 0 {
		return status.Errorf(codes.Code(c), "failed as asked after %d messages", req.GetCount())
	}
	return nil
}

func (e *echo) ClientStream(stream grpc.ClientStreamingServer[testingv1.ClientStreamRequest, testingv1.ClientStreamResponse]) error {
	defer func() { e.streamEnded(stream.Context()) }()
	var n int32
	var last *testingv1.ClientStreamRequest
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testingv1.ClientStreamResponse{LastMessage: last.GetMessage(), Count: n, ServedBy: e.name})
		}
		if err != nil {
			return err
		}
		n, last = n+1, req
	}
}

func (e *echo) BidiStream(stream grpc.BidiStreamingServer[testingv1.BidiStreamRequest, testingv1.BidiStreamResponse]) error {
	defer func() { e.streamEnded(stream.Context()) }()
	for i := int32(0); ; i++ {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if c := req.GetFailCode(); c != 0 {
			return status.Errorf(codes.Code(c), "failed as asked at message %d", i)
		}
		if err := stream.Send(&testingv1.BidiStreamResponse{Message: req.GetMessage(), Payload: req.GetPayload(), Index: i, ServedBy: e.name}); err != nil {
			return err
		}
		e.sent.Add(1)
	}
}

// streamEnded records when and why a stream handler's context ended (nil
// when it had not ended).
func (e *echo) streamEnded(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ends = append(e.ends, streamEnd{at: time.Now(), err: ctx.Err()})
}

type streamEnd struct {
	at  time.Time
	err error
}

// endsOf returns the recorded stream ends.
func (e *echo) endsOf() []streamEnd {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]streamEnd(nil), e.ends...)
}

// waitEnds waits until n stream handlers have returned.
func waitEnds(t *testing.T, e *echo, n int, within time.Duration) []streamEnd {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if ends := e.endsOf(); len(ends) >= n {
			return ends
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stream handlers returned after %v, want %d", len(e.endsOf()), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerStream(t *testing.T) {
	e := newEnv(t)
	srv := newEcho("a")
	e.serve(srv)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 30*time.Second), "x-in", "v")
	stream, err := c.ServerStream(ctx, &testingv1.ServerStreamRequest{Key: "k", Message: "hi", Payload: []byte{1, 2}, Count: 100})
	if err != nil {
		t.Fatalf("ServerStream: %v", err)
	}
	// The header comes before any Recv (grpc-gateway asks for it first).
	h, err := stream.Header()
	if err != nil || len(h.Get("x-header")) != 1 || h.Get("x-header")[0] != "h:v" {
		t.Fatalf("Header before Recv = %v, %v; want x-header h:v", h, err)
	}
	for i := range int32(100) {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if resp.GetIndex() != i || resp.GetMessage() != "hi" || len(resp.GetPayload()) != 2 || resp.GetServedBy() != "a" {
			t.Fatalf("Recv %d = %v", i, resp)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv after the last message = %v, want io.EOF", err)
	}
	if tr := stream.Trailer(); len(tr.Get("x-trailer")) != 1 || tr.Get("x-trailer")[0] != "t:v" {
		t.Fatalf("Trailer = %v, want x-trailer t:v", tr)
	}
}

func TestServerStreamEndsWithStatus(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	stream, err := c.ServerStream(ctxTimeout(t, 30*time.Second), &testingv1.ServerStreamRequest{Count: 3, FailCode: int32(codes.FailedPrecondition)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "failed as asked after 3 messages" {
		t.Fatalf("Recv after the messages = %v, want FailedPrecondition", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Recv again = %v, want the same status", err)
	}
}

// smallWindow makes both ends of the tests' streams grant 16 messages at a
// time, so that a few dozen messages wait for credit on the way.
const smallWindow = 16

func TestClientStream(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"), kafkatransport.WithStreamWindow(smallWindow))
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithStreamWindow(smallWindow)))
	stream, err := c.ClientStream(ctxTimeout(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// More than the window, so the client waits for credit on the way.
	for i := range 3*smallWindow + 5 {
		if err := stream.Send(&testingv1.ClientStreamRequest{Message: fmt.Sprint("m", i)}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	want := int32(3*smallWindow + 5)
	if resp.GetCount() != want || resp.GetLastMessage() != fmt.Sprint("m", want-1) {
		t.Fatalf("CloseAndRecv = %v, want %d messages, the last m%d", resp, want, want-1)
	}
}

func TestBidiStream(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	stream, err := c.BidiStream(ctxTimeout(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Ping-pong, then a burst the server answers while the client sends.
	for i := range 10 {
		if err := stream.Send(&testingv1.BidiStreamRequest{Message: fmt.Sprint("p", i)}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		resp, err := stream.Recv()
		if err != nil || resp.GetMessage() != fmt.Sprint("p", i) || resp.GetIndex() != int32(i) {
			t.Fatalf("Recv %d = %v, %v", i, resp, err)
		}
	}
	const burst = 500
	errc := make(chan error, 1)
	go func() {
		for i := range burst {
			if err := stream.Send(&testingv1.BidiStreamRequest{Message: fmt.Sprint("b", i)}); err != nil {
				errc <- err
				return
			}
		}
		errc <- stream.CloseSend()
	}()
	for i := range burst {
		resp, err := stream.Recv()
		if err != nil || resp.GetMessage() != fmt.Sprint("b", i) {
			t.Fatalf("Recv burst %d = %v, %v", i, resp, err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
	}
}

// TestStreamSharesPartitionWithServerInbox runs a bidirectional stream
// whose client reads replies from the partition where the server reads
// its inbox: each must ignore the frames of the other direction.
func TestStreamSharesPartitionWithServerInbox(t *testing.T) {
	e := newEnv(t)
	srv, err := kafkatransport.NewServer(e.brokers, e.common(), testReplyTopics, kafkatransport.WithStreamWindow(smallWindow))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("a"))
	e.run(srv)
	p := kafkatransport.InboxPartitionForTest(srv)
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithReplyPartition(p), kafkatransport.WithStreamWindow(smallWindow)))
	stream, err := c.BidiStream(ctxTimeout(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * smallWindow {
		if err := stream.Send(&testingv1.BidiStreamRequest{Message: fmt.Sprint("m", i)}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		resp, err := stream.Recv()
		if err != nil || resp.GetMessage() != fmt.Sprint("m", i) || len(resp.GetPayload()) != 0 {
			t.Fatalf("Recv %d = %v, %v", i, resp, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
	}
}

func TestBidiStreamServerFails(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	stream, err := c.BidiStream(ctxTimeout(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testingv1.BidiStreamRequest{FailCode: int32(codes.PermissionDenied)}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Recv = %v, want PermissionDenied", err)
	}
	// Sending to an ended stream says io.EOF, as grpc-go does.
	deadline := time.Now().Add(5 * time.Second)
	for stream.Send(&testingv1.BidiStreamRequest{}) != io.EOF {
		if time.Now().After(deadline) {
			t.Fatal("Send on an ended stream does not return io.EOF")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStreamClientCancels(t *testing.T) {
	e := newEnv(t)
	srv := newEcho("a")
	e.serve(srv)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.ServerStream(ctx, &testingv1.ServerStreamRequest{Count: 1000, IntervalMs: 50})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	cancelled := time.Now()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancel = %v, want Canceled", err)
	}
	ends := waitEnds(t, srv, 1, 5*time.Second)
	if took := ends[0].at.Sub(cancelled); took > time.Second || ends[0].err == nil {
		t.Fatalf("server handler ended %v after the cancel with %v, want within 1s, cancelled", took, ends[0].err)
	}
}

func TestStreamDeadline(t *testing.T) {
	e := newEnv(t)
	srv := newEcho("a")
	e.serve(srv)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	stream, err := c.ServerStream(ctx, &testingv1.ServerStreamRequest{Count: 1000, IntervalMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got int
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
		got++
	}
	if status.Code(err) != codes.DeadlineExceeded || got == 0 {
		t.Fatalf("after %d messages Recv = %v, want DeadlineExceeded", got, err)
	}
	ends := waitEnds(t, srv, 1, 5*time.Second)
	if !errors.Is(ends[0].err, context.DeadlineExceeded) {
		t.Fatalf("server handler's context ended with %v, want its deadline", ends[0].err)
	}
}

func TestStreamFlowControl(t *testing.T) {
	t.Run("messages", func(t *testing.T) {
		testSlowReader(t, 8, kafkatransport.WithStreamWindow(8))
	})
	t.Run("bytes", func(t *testing.T) {
		// Nine and a half messages' worth of bytes in a window of a
		// thousand messages: the sender starts a tenth, not an eleventh.
		size := proto.Size(&testingv1.ServerStreamResponse{Payload: make([]byte, 100), Index: 59, ServedBy: "a"})
		testSlowReader(t, 10, kafkatransport.WithStreamWindow(1000), kafkatransport.WithStreamWindowBytes(10*size-size/2))
	})
}

// testSlowReader reads a server stream of 60 messages of 100 bytes slowly
// and checks that the server runs ahead of it by window messages at most,
// and by half of them at least (credit flows).
func testSlowReader(t *testing.T, window int64, opts ...kafkatransport.StreamOption) {
	e := newEnv(t)
	srv := newEcho("a")
	var serveOpts []kafkatransport.ServerOption
	var dialOpts []kafkatransport.ClientOption
	for _, o := range opts {
		serveOpts, dialOpts = append(serveOpts, o), append(dialOpts, o)
	}
	e.serve(srv, serveOpts...)
	c := testingv1.NewEchoServiceKafkaClient(e.dial(dialOpts...))
	stream, err := c.ServerStream(ctxTimeout(t, 60*time.Second), &testingv1.ServerStreamRequest{Count: 60, Payload: make([]byte, 100)})
	if err != nil {
		t.Fatal(err)
	}
	// A slow reader: the server may run ahead by the window only.
	var maxAhead int64
	for i := range 60 {
		time.Sleep(20 * time.Millisecond)
		if ahead := srv.sent.Load() - int64(i); ahead > maxAhead {
			maxAhead = ahead
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
	}
	if maxAhead > window {
		t.Fatalf("the server ran %d messages ahead of a slow reader, more than the window %d", maxAhead, window)
	}
	if maxAhead < window/2 {
		t.Fatalf("the server ran only %d messages ahead: credit does not flow", maxAhead)
	}
	t.Logf("server ran at most %d messages ahead (window %d)", maxAhead, window)
}

func TestStreamInterceptors(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var order []string
	record := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	serverIC := func(name string) grpc.StreamServerInterceptor {
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			record(fmt.Sprintf("server %s %s client=%v server=%v", name, info.FullMethod, info.IsClientStream, info.IsServerStream))
			return handler(srv, ss)
		}
	}
	clientIC := func(name string) grpc.StreamClientInterceptor {
		return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			record("client " + name + " " + method)
			return streamer(metadata.AppendToOutgoingContext(ctx, "x-in", name), desc, cc, method, opts...)
		}
	}
	e.serve(newEcho("a"), kafkatransport.WithStreamServerInterceptors(serverIC("1"), serverIC("2")))
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithStreamClientInterceptors(clientIC("1"), clientIC("2"))))
	stream, err := c.ServerStream(ctxTimeout(t, 30*time.Second), &testingv1.ServerStreamRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	m := testingv1.EchoService_ServerStream_FullMethodName
	want := []string{"client 1 " + m, "client 2 " + m, "server 1 " + m + " client=false server=true", "server 2 " + m + " client=false server=true"}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("interceptors ran %q, want %q", order, want)
	}
	// Both interceptors add x-in, the outer first; the handler echoes the
	// first value.
	if h, _ := stream.Header(); len(h.Get("x-header")) != 1 || h.Get("x-header")[0] != "h:1" {
		t.Fatalf("header %v, want x-header h:1: the interceptors' metadata did not reach the handler", h)
	}
}

func TestStreamOfUnknownMethod(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	cc := e.dial()
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	for _, method := range []string{"/kgrpc.testing.v1.EchoService/Nope", testingv1.EchoService_Echo_FullMethodName} {
		stream, err := cc.NewStream(ctxTimeout(t, 30*time.Second), desc, method)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(&testingv1.BidiStreamResponse{}); status.Code(err) != codes.Unimplemented {
			t.Fatalf("%s: RecvMsg = %v, want Unimplemented", method, err)
		}
	}
}

// A stream no server accepts (here: no server runs) ends Unavailable after
// the client's default timeout, not never.
func TestStreamNotAccepted(t *testing.T) {
	e := newEnv(t)
	e.createTopic(testingv1.EchoServiceKafkaTopic, 1) // so the opening is stored
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithDefaultTimeout(time.Second)))
	stream, err := c.BidiStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = stream.Recv()
	if took := time.Since(start); status.Code(err) != codes.Unavailable || took > 5*time.Second {
		t.Fatalf("Recv = %v after %v, want Unavailable after about 1s", err, took)
	}
}

func TestStreamServerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process; skipped with -short")
	}
	e := newEnv(t)
	cmd := startHelper(t, e)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)
	stream, err := c.ServerStream(ctxTimeout(t, 60*time.Second), &testingv1.ServerStreamRequest{Count: 100000, IntervalMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetServedBy() != "helper" {
		t.Fatalf("Recv = %v, %v; want a message of the helper", resp, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	took := time.Since(killed)
	if status.Code(err) != codes.Unavailable || took > 10*time.Second {
		t.Fatalf("Recv %v after SIGKILL = %v, want Unavailable within 10s", took, err)
	}
	t.Logf("Unavailable %v after SIGKILL: %v", took.Round(time.Millisecond), err)
}

func TestStreamClientGoesSilent(t *testing.T) {
	e := newEnv(t)
	srv := newEcho("a")
	e.serve(srv, kafkatransport.WithStreamHeartbeat(100*time.Millisecond))
	// A client that opens a stream and then dies: its ClientConn closes
	// without telling the server (as a killed process would not).
	cc := e.dial(kafkatransport.WithStreamHeartbeat(100 * time.Millisecond))
	c := testingv1.NewEchoServiceKafkaClient(cc)
	stream, err := c.BidiStream(ctxTimeout(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testingv1.BidiStreamRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	var silenced atomic.Int64
	silenced.Store(time.Now().UnixNano())
	kafkatransport.SilenceForTest(cc)
	ends := waitEnds(t, srv, 1, 10*time.Second)
	took := ends[0].at.Sub(time.Unix(0, silenced.Load()))
	if ends[0].err == nil || took > 2*time.Second {
		t.Fatalf("server handler ended %v after the client went silent, with %v; want within 3 heartbeats", took, ends[0].err)
	}
}
