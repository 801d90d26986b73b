package kafkatransport_test

// The transport conformance suite. The broker comes from KAFKA_BROKERS when
// set (real Apache Kafka), else from an in-process kfake cluster, so the same
// tests prove the transport on both.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// Environment of the helper process that TestCrashedInstanceRedelivers
// starts and kills.
const (
	envHelperBrokers = "KGRPC_TEST_ECHO_BROKERS"
	envHelperPrefix  = "KGRPC_TEST_ECHO_PREFIX"
)

func TestMain(m *testing.M) {
	if b := os.Getenv(envHelperBrokers); b != "" {
		os.Exit(runHelperServer(b, os.Getenv(envHelperPrefix)))
	}
	os.Exit(m.Run())
}

// runHelperServer serves the echo service until the process is killed.
func runHelperServer(brokers, prefix string) int {
	ctx := context.Background()
	srv, err := kafkatransport.NewServer(brokers, kafkatransport.WithTopicPrefix(prefix), kafkatransport.WithKafkaConfig(fastGroup))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("helper"))
	go func() {
		<-srv.Ready()
		fmt.Println("ready")
	}()
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fastGroup makes group membership changes quick in tests.
var fastGroup = kafka.ConfigMap{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

// echo is the sample service. It records the ids of the Sleep calls it
// started, and counts calls.
type echo struct {
	testingv1.UnimplementedEchoServiceServer
	name    string
	mu      sync.Mutex
	started map[string]int
	calls   atomic.Int64
	sent    atomic.Int64 // messages its stream handlers sent
	ends    []streamEnd  // how its stream handlers ended, guarded by mu
}

func newEcho(name string) *echo { return &echo{name: name, started: map[string]int{}} }

func (e *echo) Echo(ctx context.Context, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	e.calls.Add(1)
	if req.GetMessage() == "bad-header-key" {
		_ = grpc.SetHeader(ctx, metadata.MD{"x-\xff": {"v"}, "x-ok": {"v"}})
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-in"); len(v) > 0 {
			_ = grpc.SetHeader(ctx, metadata.Pairs("x-header", "h:"+v[0]))
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t:"+v[0]))
		}
		if v := md.Get("x-raw-bin"); len(v) > 0 {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-echo-bin", v[0]))
		}
	}
	return &testingv1.EchoResponse{Message: req.GetMessage(), Payload: req.GetPayload(), ServedBy: e.name}, nil
}

func (e *echo) Fail(ctx context.Context, req *testingv1.FailRequest) (*testingv1.FailResponse, error) {
	e.mu.Lock()
	e.started["fail:"+req.GetMessage()]++
	e.mu.Unlock()
	if req.GetMessage() == "not-utf8" {
		// A message built from raw bytes, as a careless handler might.
		return nil, status.Error(codes.Code(req.GetCode()), "bad \xff byte")
	}
	st := status.New(codes.Code(req.GetCode()), req.GetMessage())
	if req.GetDetail() != "" {
		var err error
		st, err = st.WithDetails(&errdetails.ErrorInfo{Reason: req.GetDetail(), Domain: "test", Metadata: map[string]string{"k": "v"}})
		if err != nil {
			return nil, err
		}
	}
	return nil, st.Err()
}

func (e *echo) Sleep(ctx context.Context, req *testingv1.SleepRequest) (*testingv1.SleepResponse, error) {
	e.calls.Add(1)
	e.mu.Lock()
	e.started[req.GetId()]++
	e.mu.Unlock()
	select {
	case <-time.After(time.Duration(req.GetDurationMs()) * time.Millisecond):
		return &testingv1.SleepResponse{Id: req.GetId(), ServedBy: e.name}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *echo) startedCount(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started[id]
}

// env is one test's broker and topic prefix.
type env struct {
	t       *testing.T
	brokers string
	prefix  string
	adm     *kafka.AdminClient // made by the first admin call
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, brokers: kafkatest.Brokers(t), prefix: kafkatest.TopicPrefix(t)}
}

// common returns the options of every role in the test: its topic prefix
// and quick group membership.
func (e *env) common() kafkatransport.Option {
	return kafkatransport.WithOptions(kafkatransport.WithTopicPrefix(e.prefix), kafkatransport.WithKafkaConfig(fastGroup))
}

// testReplyTopics are the reply topics of the tests' servers: those of the
// default client, of clients dialled with WithReplyTopic("replies", n), and
// of rawRequester.
var testReplyTopics = kafkatransport.WithReplyTopics("kgrpc.replies", "replies", "raw-replies")

// serve starts a server for impl and returns a function that stops it
// gracefully and waits for Serve to return.
func (e *env) serve(impl testingv1.EchoServiceServer, extra ...kafkatransport.ServerOption) (stop func()) {
	e.t.Helper()
	srv, err := kafkatransport.NewServer(e.brokers, append([]kafkatransport.ServerOption{e.common(), testReplyTopics}, extra...)...)
	if err != nil {
		e.t.Fatalf("NewServer: %v", err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, impl)
	return e.run(srv)
}

// run runs srv until the test ends and returns a function that stops it
// gracefully and waits for Serve to return (kafkatest.Serve).
func (e *env) run(srv *kafkatransport.Server) (stop func()) {
	e.t.Helper()
	return kafkatest.Serve(e.t, srv)
}

// dial returns a client of the test's broker with the test's topic prefix
// and extra, closed when the test ends (kafkatest.Dial).
func (e *env) dial(extra ...kafkatransport.ClientOption) *kafkatransport.ClientConn {
	e.t.Helper()
	return kafkatest.Dial(e.t, e.brokers, append([]kafkatransport.ClientOption{e.common()}, extra...)...)
}

// admin returns an admin client on the test's broker.
func (e *env) admin() *kafka.AdminClient {
	e.t.Helper()
	if e.adm == nil {
		a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": e.brokers})
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(a.Close)
		e.adm = a
	}
	return e.adm
}

// createTopic creates topic (without the prefix) with the given partitions.
func (e *env) createTopic(topic string, partitions int) {
	e.t.Helper()
	res, err := e.admin().CreateTopics(ctxTimeout(e.t, 20*time.Second), []kafka.TopicSpecification{{Topic: e.prefix + topic, NumPartitions: partitions, ReplicationFactor: -1}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		e.t.Fatalf("create topic %s: %v %v", topic, err, res)
	}
}

// topicExists reports whether topic (without the prefix) exists. It lists
// every topic: asking for one by name could make the broker create it.
func (e *env) topicExists(topic string) bool {
	e.t.Helper()
	md, err := e.admin().GetMetadata(nil, true, 10_000)
	if err != nil {
		e.t.Fatal(err)
	}
	_, ok := md.Topics[e.prefix+topic]
	return ok
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitServing makes calls until one succeeds: the group has settled.
func waitServing(t *testing.T, c testingv1.EchoServiceClient) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Echo(ctx, &testingv1.EchoRequest{Message: "warm-up"})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service never answered: %v", err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	tests := []struct {
		name string
		req  *testingv1.EchoRequest
	}{
		{"empty", &testingv1.EchoRequest{}},
		{"message", &testingv1.EchoRequest{Message: "héllo, kafka"}},
		{"keyed", &testingv1.EchoRequest{Key: "user-1", Message: "keyed"}},
		{"payload 256KiB", &testingv1.EchoRequest{Payload: make([]byte, 256<<10)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Echo(ctxTimeout(t, 20*time.Second), tc.req)
			if err != nil {
				t.Fatalf("Echo: %v", err)
			}
			if resp.GetMessage() != tc.req.GetMessage() || len(resp.GetPayload()) != len(tc.req.GetPayload()) || resp.GetServedBy() != "a" {
				t.Fatalf("Echo = %v, want message %q payload %d bytes served by a", resp, tc.req.GetMessage(), len(tc.req.GetPayload()))
			}
		})
	}
}

func TestPlainGeneratedClientWithoutSpec(t *testing.T) {
	// The standard protoc-gen-go-grpc client on the bare ClientConn, and the
	// standard Register function on the Server, agree on the default topic.
	e := newEnv(t)
	srv, err := kafkatransport.NewServer(e.brokers, e.common())
	if err != nil {
		t.Fatal(err)
	}
	testingv1.RegisterEchoServiceServer(srv, newEcho("plain"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := testingv1.NewEchoServiceClient(e.dial())
	resp, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Message: "plain"})
	if err != nil || resp.GetServedBy() != "plain" {
		t.Fatalf("Echo = %v, %v", resp, err)
	}
}

func TestStatusCodesAndDetails(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	for _, code := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.Unauthenticated, codes.Internal, codes.Unavailable} {
		t.Run(code.String(), func(t *testing.T) {
			_, err := c.Fail(ctxTimeout(t, 20*time.Second), &testingv1.FailRequest{Code: int32(code), Message: "msg " + code.String(), Detail: "reason-" + code.String()})
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("error %v is not a status", err)
			}
			if st.Code() != code || st.Message() != "msg "+code.String() {
				t.Fatalf("status = %v %q, want %v %q", st.Code(), st.Message(), code, "msg "+code.String())
			}
			if len(st.Details()) != 1 {
				t.Fatalf("details = %v, want one ErrorInfo", st.Details())
			}
			info, ok := st.Details()[0].(*errdetails.ErrorInfo)
			if !ok || info.GetReason() != "reason-"+code.String() || info.GetMetadata()["k"] != "v" {
				t.Fatalf("detail = %v", st.Details()[0])
			}
		})
	}
	t.Run("no details", func(t *testing.T) {
		_, err := c.Fail(ctxTimeout(t, 20*time.Second), &testingv1.FailRequest{Code: int32(codes.ResourceExhausted), Message: "plain"})
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted || st.Message() != "plain" || len(st.Details()) != 0 {
			t.Fatalf("status = %v", st)
		}
	})
	t.Run("message not UTF-8", func(t *testing.T) {
		// Protobuf strings are UTF-8: the server repairs the message
		// rather than send a reply no client can decode.
		_, err := c.Fail(ctxTimeout(t, 20*time.Second), &testingv1.FailRequest{Code: int32(codes.DataLoss), Message: "not-utf8"})
		st := status.Convert(err)
		if st.Code() != codes.DataLoss || st.Message() != "bad \uFFFD byte" {
			t.Fatalf("status = %v %q, want DataLoss %q", st.Code(), st.Message(), "bad \uFFFD byte")
		}
	})
	t.Run("method name not UTF-8", func(t *testing.T) {
		// Refused at once on the client, not sent to be dropped by the
		// server while the caller waits out its deadline.
		start := time.Now()
		err := e.dialRaw(t, "/kgrpc.testing.v1.EchoService/\xff")
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "not UTF-8") {
			t.Fatalf("err = %v, want Internal about UTF-8", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("refused after %v, want at once", d)
		}
	})
	t.Run("response metadata key not UTF-8", func(t *testing.T) {
		// grpc.SetHeader takes keys as they are; one that protobuf cannot
		// carry is dropped, and the reply still arrives.
		var header metadata.MD
		resp, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Message: "bad-header-key"}, grpc.Header(&header))
		if err != nil || resp.GetMessage() != "bad-header-key" {
			t.Fatalf("Echo = %v, %v", resp, err)
		}
		if len(header) != 1 || header.Get("x-ok")[0] != "v" {
			t.Fatalf("header = %v, want only x-ok", header)
		}
	})
	t.Run("unimplemented method", func(t *testing.T) {
		err := e.dialRaw(t, "/kgrpc.testing.v1.EchoService/NoSuchMethod")
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("unknown method: %v, want Unimplemented", err)
		}
	})
}

// dialRaw invokes a method by name with an EchoRequest on the echo topic.
func (e *env) dialRaw(t *testing.T, method string) error {
	cc := e.dial()
	conn := cc.Service(testingv1.EchoServiceKafkaSpec)
	return conn.Invoke(ctxTimeout(t, 20*time.Second), method, &testingv1.EchoRequest{}, &testingv1.EchoResponse{})
}

func TestDeadlineExceeded(t *testing.T) {
	e := newEnv(t)
	impl := newEcho("a")
	c := testingv1.NewEchoServiceKafkaClient(e.dial())

	t.Run("expired before served is never run", func(t *testing.T) {
		// No server runs yet: the request waits in the topic past its
		// deadline. Clients do not create request topics, so the test
		// does.
		e.createTopic(testingv1.EchoServiceKafkaTopic, 6)
		start := time.Now()
		_, err := c.Sleep(ctxTimeout(t, 300*time.Millisecond), &testingv1.SleepRequest{Id: "expired", DurationMs: 1})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Sleep = %v, want DeadlineExceeded", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("DeadlineExceeded after %v, want about 300ms", el)
		}
		e.serve(impl)
		waitServing(t, c)
		// The server has consumed past the expired request by now; make
		// sure with a call keyed like nothing in particular on every
		// partition: Sleep calls are unkeyed, so send several.
		for i := range 12 {
			if _, err := c.Sleep(ctxTimeout(t, 20*time.Second), &testingv1.SleepRequest{Id: fmt.Sprint("after-", i), DurationMs: 1}); err != nil {
				t.Fatalf("Sleep after: %v", err)
			}
		}
		time.Sleep(200 * time.Millisecond)
		if n := impl.startedCount("expired"); n != 0 {
			t.Fatalf("expired request ran %d times, want 0", n)
		}
	})
	t.Run("expires while running", func(t *testing.T) {
		start := time.Now()
		_, err := c.Sleep(ctxTimeout(t, 500*time.Millisecond), &testingv1.SleepRequest{Id: "slow", DurationMs: 5000})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Sleep = %v, want DeadlineExceeded", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("returned after %v, want about 500ms", el)
		}
	})
}

func TestClientDoesNotCreateRequestTopic(t *testing.T) {
	// No server has run: the service's request topic does not exist. The
	// call fails at its deadline and leaves no topic behind, so that the
	// server, when it starts, creates it with its own partition count.
	e := newEnv(t)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	for _, call := range []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"keyed", func(ctx context.Context) error {
			_, err := c.Echo(ctx, &testingv1.EchoRequest{Key: "k", Message: "anyone?"})
			return err
		}},
		{"unkeyed", func(ctx context.Context) error {
			_, err := c.Sleep(ctx, &testingv1.SleepRequest{Id: "anyone?"})
			return err
		}},
		{"unkeyed read, hedged", func(ctx context.Context) error {
			// Its client reads the topic's metadata to pick partitions.
			_, err := c.Lookup(ctx, &testingv1.LookupRequest{Id: "anyone?"})
			return err
		}},
	} {
		t.Run(call.name, func(t *testing.T) {
			start := time.Now()
			err := call.do(ctxTimeout(t, time.Second))
			if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Unavailable {
				t.Fatalf("call = %v, want DeadlineExceeded or Unavailable", err)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("failed after %v, want about 1s", el)
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // what a late metadata request would create
	if e.topicExists(testingv1.EchoServiceKafkaTopic) {
		t.Fatalf("the client created the request topic %s", testingv1.EchoServiceKafkaTopic)
	}
	if !e.topicExists("kgrpc.replies") {
		t.Fatal("the client did not create its reply topic")
	}
}

func TestCancellation(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Sleep(ctx, &testingv1.SleepRequest{Id: "cancel-me", DurationMs: 3000})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("Sleep = %v, want Canceled", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("returned after %v, want about 200ms", el)
	}
	// An already cancelled context fails at once, without a request.
	if _, err := c.Echo(ctx, &testingv1.EchoRequest{}); status.Code(err) != codes.Canceled {
		t.Fatalf("Echo on cancelled ctx = %v", err)
	}
}

func TestHeadersAndTrailers(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 20*time.Second), "x-in", "v1", "x-raw-bin", string([]byte{0, 1, 2, 255}))
	var header, trailer metadata.MD
	if _, err := c.Echo(ctx, &testingv1.EchoRequest{Message: "md"}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if got := header.Get("x-header"); len(got) != 1 || got[0] != "h:v1" {
		t.Errorf("header x-header = %v, want [h:v1]", got)
	}
	if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "t:v1" {
		t.Errorf("trailer x-trailer = %v, want [t:v1]", got)
	}
	if got := trailer.Get("x-echo-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 255}) {
		t.Errorf("binary trailer = %q, want the bytes sent", got)
	}
}

func TestInterceptorOrder(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var trace []string
	rec := func(s string) { mu.Lock(); trace = append(trace, s); mu.Unlock() }
	ci := func(name string) grpc.UnaryClientInterceptor {
		return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			rec(name + ">")
			ctx = metadata.AppendToOutgoingContext(ctx, "x-from-"+name, "1")
			err := invoker(ctx, method, req, reply, cc, opts...)
			rec(name + "<")
			return err
		}
	}
	si := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			rec(fmt.Sprintf("%s>%s(c1=%d,c2=%d)", name, info.FullMethod, len(md.Get("x-from-c1")), len(md.Get("x-from-c2"))))
			resp, err := handler(ctx, req)
			rec(name + "<")
			return resp, err
		}
	}
	e.serve(newEcho("a"), kafkatransport.WithUnaryServerInterceptors(si("s1"), si("s2")))
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithUnaryClientInterceptors(ci("c1"), ci("c2"))))
	if _, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{}); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	want := "c1> c2> s1>/kgrpc.testing.v1.EchoService/Echo(c1=1,c2=1) s2>/kgrpc.testing.v1.EchoService/Echo(c1=1,c2=1) s2< s1< c2< c1<"
	mu.Lock()
	got := strings.Join(trace, " ")
	mu.Unlock()
	if got != want {
		t.Fatalf("order:\n got %s\nwant %s", got, want)
	}
}

// settle calls until every named instance has served at least one call,
// so that the consumer group has spread the partitions over all of them. It
// returns how many calls each instance served.
func settle(t *testing.T, c testingv1.EchoServiceClient, names ...string) map[string]int {
	t.Helper()
	servedBy := map[string]int{}
	var mu sync.Mutex
	deadline := time.Now().Add(60 * time.Second)
	for len(servedBy) < len(names) && time.Now().Before(deadline) {
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Echo(ctxTimeout(t, 30*time.Second), &testingv1.EchoRequest{Key: fmt.Sprint("k", i), Message: fmt.Sprint(i)})
				if err != nil {
					t.Errorf("Echo: %v", err)
					return
				}
				if resp.GetMessage() != fmt.Sprint(i) {
					t.Errorf("Echo(%d) answered %q", i, resp.GetMessage())
				}
				mu.Lock()
				servedBy[resp.GetServedBy()]++
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	for _, n := range names {
		if servedBy[n] == 0 {
			t.Fatalf("served by %v, want every one of %v", servedBy, names)
		}
	}
	return servedBy
}

func TestInstancesShareLoad(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b", "c"} {
		e.serve(newEcho(n))
	}
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	t.Logf("served by %v", settle(t, c, "a", "b", "c"))
}

// load runs n Sleep calls of sleepMs with the given concurrency and returns
// the errors and how many calls each instance served.
func load(t *testing.T, c testingv1.EchoServiceClient, n, conc int, sleepMs int64, timeout time.Duration) (errs []error, served map[string]int) {
	return loadNotify(t, c, n, conc, sleepMs, timeout, nil)
}

// loadNotify is load calling answered, when not nil, with the instance
// that served each call as it is answered.
func loadNotify(t *testing.T, c testingv1.EchoServiceClient, n, conc int, sleepMs int64, timeout time.Duration, answered func(servedBy string)) (errs []error, served map[string]int) {
	var mu sync.Mutex
	served = map[string]int{}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			id := fmt.Sprint("call-", i)
			resp, err := c.Sleep(ctxTimeout(t, timeout), &testingv1.SleepRequest{Id: id, DurationMs: sleepMs})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				return
			}
			if resp.GetId() != id {
				errs = append(errs, fmt.Errorf("%s answered as %s", id, resp.GetId()))
			}
			served[resp.GetServedBy()]++
			if answered != nil {
				answered(resp.GetServedBy())
			}
		}()
	}
	wg.Wait()
	return errs, served
}

func TestInstanceStopsMidLoad(t *testing.T) {
	e := newEnv(t)
	a := newEcho("a")
	stopA := e.serve(a)
	e.serve(newEcho("b"))
	e.serve(newEcho("c"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	settle(t, c, "a", "b", "c")
	before := a.calls.Load()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// Stop a once it is busy with the load (bounded, in case the
		// partitioner sends a little to it).
		deadline := time.Now().Add(3 * time.Second)
		for a.calls.Load() < before+20 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		stopA() // graceful: drains a's in-flight calls, hands over its partitions
	}()
	errs, served := load(t, c, 600, 32, 50, 45*time.Second)
	<-stopped
	if len(errs) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
	}
	if served["a"] == 0 || served["b"]+served["c"] == 0 {
		t.Fatalf("served by %v, want a before its stop and b, c after", served)
	}
	t.Logf("served by %v", served)
}

func TestCrashedInstanceRedelivers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process; skipped with -short")
	}
	e := newEnv(t)
	// The helper process is the only server at first, so it holds calls in
	// flight when it is killed.
	cmd := startHelper(t, e)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)
	survivor := newEcho("survivor")
	e.serve(survivor)

	// Killed once it has answered a call of the load (keyless calls stick
	// to one partition for 10ms, so which instance gets the first ones is
	// chance), and 100ms later: calls sleep 400ms each and the load keeps
	// 32 going, so it then has some in flight.
	var killed atomic.Bool
	helperAnswered := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-helperAnswered:
		case <-time.After(30 * time.Second):
		}
		time.Sleep(100 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		killed.Store(true)
	}()
	errs, served := loadNotify(t, c, 200, 32, 400, 60*time.Second, func(by string) {
		if by == "helper" {
			once.Do(func() { close(helperAnswered) })
		}
	})
	if !killed.Load() {
		t.Fatal("load ended before the helper was killed")
	}
	if len(errs) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
	}
	if served["helper"] == 0 || served["survivor"] == 0 {
		t.Fatalf("served by %v, want both the killed helper and the survivor", served)
	}
	t.Logf("served by %v", served)
}

// startHelper starts a process that serves the echo service on e's broker
// as instance "helper" (runHelperServer) and waits until it serves; the
// test kills it at the latest when it ends.
func startHelper(t *testing.T, e *env) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelperBrokers+"="+e.brokers, envHelperPrefix+"="+e.prefix)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if s.Text() == "ready" {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("helper server not ready")
	}
	return cmd
}

func TestClientsReceiveOnlyTheirReplies(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared partition %v", shared), func(t *testing.T) {
			var clients []testingv1.EchoServiceClient
			for i := range 3 {
				var opts []kafkatransport.ClientOption
				if shared {
					opts = append(opts, kafkatransport.WithReplyPartition(0))
				} else {
					opts = append(opts, kafkatransport.WithReplyPartition(int32(i)))
				}
				clients = append(clients, testingv1.NewEchoServiceKafkaClient(e.dial(opts...)))
			}
			waitServing(t, clients[0])
			var wg sync.WaitGroup
			var failures atomic.Int64
			for ci, c := range clients {
				for j := range 100 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						want := fmt.Sprintf("client-%d-call-%d", ci, j)
						resp, err := c.Echo(ctxTimeout(t, 30*time.Second), &testingv1.EchoRequest{Message: want})
						if err != nil || resp.GetMessage() != want {
							failures.Add(1)
							t.Errorf("client %d call %d = %v, %v", ci, j, resp, err)
						}
					}()
				}
			}
			wg.Wait()
			if failures.Load() > 0 {
				t.Fatalf("%d calls got a wrong or no reply", failures.Load())
			}
		})
	}
}

func TestUndecodableRequest(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)

	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	replyTopic := e.prefix + "raw-replies"
	res, err := admin.CreateTopics(ctxTimeout(t, 20*time.Second), []kafka.TopicSpecification{{Topic: replyTopic, NumPartitions: 1, ReplicationFactor: -1}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("create topic: %v %v", err, res)
	}
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.prefix + "raw", "auto.offset.reset": "earliest"})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := cons.Assign([]kafka.TopicPartition{{Topic: &replyTopic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	reqTopic := e.prefix + testingv1.EchoServiceKafkaTopic
	produce := func(value []byte, headers ...kafka.Header) {
		t.Helper()
		dc := make(chan kafka.Event, 1)
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &reqTopic, Partition: kafka.PartitionAny}, Value: value, Headers: headers}, dc); err != nil {
			t.Fatal(err)
		}
		if m := (<-dc).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
	// Records with no envelope or a garbage one are dead-lettered (see
	// TestUnanswerableRequestsDeadLettered); one with garbage for a value
	// is answered InvalidArgument.
	produce([]byte("not a request"))
	produce([]byte("not a request"), kafka.Header{Key: "rpc", Value: []byte{0xff, 0xff}})
	env, err := proto.Marshal(&kafkav1.RequestEnvelope{
		Method:         testingv1.EchoService_Echo_FullMethodName,
		Id:             "raw-1",
		ReplyTopic:     replyTopic,
		ReplyPartition: 0,
		DeadlineUnixMs: time.Now().Add(30 * time.Second).UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	produce([]byte{0xff, 0xff, 0xff, 0xff}, kafka.Header{Key: "rpc", Value: env})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no reply to the undecodable request")
		}
		m, err := cons.ReadMessage(time.Second)
		if err != nil {
			continue
		}
		var reply kafkav1.ReplyEnvelope
		for _, h := range m.Headers {
			if h.Key == "rpc" {
				if err := proto.Unmarshal(h.Value, &reply); err != nil {
					t.Fatalf("reply envelope: %v", err)
				}
			}
		}
		if reply.GetId() != "raw-1" {
			continue
		}
		if codes.Code(reply.GetCode()) != codes.InvalidArgument || !strings.Contains(reply.GetMessage(), "undecodable") {
			t.Fatalf("undecodable request answered with %v %q, want InvalidArgument", codes.Code(reply.GetCode()), reply.GetMessage())
		}
		break
	}
	// And the server keeps serving.
	if _, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Message: "still here"}); err != nil {
		t.Fatalf("Echo after bad records: %v", err)
	}
}

func TestOversizedRequest(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	// The client's producer refuses records over its message.max.bytes.
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithKafkaConfig(kafka.ConfigMap{"message.max.bytes": 100000})))
	_, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Payload: make([]byte, 200000)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized Echo = %v, want ResourceExhausted", err)
	}
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info.GetReason() != kafkatransport.ReasonRequestTooLarge || info.GetDomain() != kafkatransport.ErrorDomain {
		t.Fatalf("oversized Echo's details %v, want an ErrorInfo %s/%s", status.Convert(err).Details(), kafkatransport.ErrorDomain, kafkatransport.ReasonRequestTooLarge)
	}
	if _, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Payload: make([]byte, 1000)}); err != nil {
		t.Fatalf("Echo after oversized: %v", err)
	}
}

// pingRecorder is the handler side of the event tests.
type pingRecorder struct {
	mu       sync.Mutex
	attempts map[string]int
	handled  map[string][]int64 // id -> seqs, in handling order
}

func (r *pingRecorder) handle(ctx context.Context, p *testingv1.Pinged) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := fmt.Sprint(p.GetId(), "/", p.GetSeq())
	r.attempts[key]++
	if p.GetFailTimes() < 0 || r.attempts[key] <= int(p.GetFailTimes()) {
		return errors.New("failing on purpose")
	}
	if info, ok := kafkatransport.EventFromContext(ctx); !ok || info.Attempt != r.attempts[key] {
		return fmt.Errorf("EventFromContext = %+v, %v; attempt %d", info, ok, r.attempts[key])
	}
	r.handled[p.GetId()] = append(r.handled[p.GetId()], p.GetSeq())
	return nil
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	pub, err := kafkatransport.NewPublisher(e.brokers, e.common())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	pinged := testingv1.NewPingedPublisher(pub)

	rec := &pingRecorder{attempts: map[string]int{}, handled: map[string][]int64{}}
	sub, err := kafkatransport.NewSubscriber(e.brokers, "echo-test-subscriber",
		e.common(), kafkatransport.WithEventRetry(3, 10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, rec.handle)
	runSubscriber(t, sub)

	pctx := ctxTimeout(t, 30*time.Second)
	// Ordered per key, with retries on the way, and one poison event.
	for seq := int64(1); seq <= 20; seq++ {
		for _, id := range []string{"a", "b", "c"} {
			ev := &testingv1.Pinged{Id: id, Seq: seq}
			if id == "b" && seq%5 == 0 {
				ev.FailTimes = 2 // succeeds on the third and last attempt
			}
			if id == "c" && seq == 7 {
				ev.FailTimes = -1 // never succeeds: dead-lettered
			}
			if err := pinged.Publish(pctx, ev); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
	}
	// An undecodable record on the event topic goes to the DLQ at once.
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := e.prefix + testingv1.PingedKafkaTopic
	dc := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: []byte("a"), Value: []byte{0xff, 0xff, 0xff}}, dc); err != nil {
		t.Fatal(err)
	}
	<-dc
	if err := pinged.Publish(pctx, &testingv1.Pinged{Id: "a", Seq: 21}); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		rec.mu.Lock()
		na, nb, nc := len(rec.handled["a"]), len(rec.handled["b"]), len(rec.handled["c"])
		rec.mu.Unlock()
		if na == 21 && nb == 20 && nc == 19 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled a=%d b=%d c=%d, want 21, 20, 19", na, nb, nc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec.mu.Lock()
	for id, seqs := range rec.handled {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("events of %s handled out of order: %v", id, seqs)
				break
			}
		}
	}
	if n := rec.attempts["b/5"]; n != 3 {
		t.Errorf("b/5 attempted %d times, want 3", n)
	}
	if n := rec.attempts["c/7"]; n != 3 {
		t.Errorf("c/7 attempted %d times, want 3 (then dead-lettered)", n)
	}
	rec.mu.Unlock()

	// The dead-letter topic holds the poison event and the undecodable
	// record, with the error.
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.prefix + "dlq-reader", "auto.offset.reset": "earliest"})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := cons.Subscribe(sub.DeadLetterTopic(), nil); err != nil {
		t.Fatal(err)
	}
	var letters []string
	deadline = time.Now().Add(60 * time.Second)
	for len(letters) < 2 && time.Now().Before(deadline) {
		m, err := cons.ReadMessage(time.Second)
		if err != nil {
			continue
		}
		var errText, attempts string
		for _, h := range m.Headers {
			switch h.Key {
			case "dlq-error":
				errText = string(h.Value)
			case "dlq-attempts":
				attempts = string(h.Value)
			}
		}
		var ev testingv1.Pinged
		if proto.Unmarshal(m.Value, &ev) == nil && ev.GetId() == "c" {
			letters = append(letters, fmt.Sprintf("c/%d attempts=%s err=%s", ev.GetSeq(), attempts, errText))
		} else {
			letters = append(letters, fmt.Sprintf("raw attempts=%s undecodable=%v", attempts, strings.Contains(errText, "undecodable")))
		}
	}
	want := map[string]bool{"c/7 attempts=3 err=failing on purpose": true, "raw attempts=1 undecodable=true": true}
	if len(letters) != 2 || !want[letters[0]] || !want[letters[1]] {
		t.Fatalf("dead letters = %q, want %v", letters, want)
	}
}

func TestStartToFirstCall(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	e.serve(newEcho("a"))
	served := time.Since(start)
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	dialed := time.Since(start)
	// The first call may wait for the group's first assignment.
	if _, err := c.Echo(ctxTimeout(t, 30*time.Second), &testingv1.EchoRequest{Message: "first"}); err != nil {
		t.Fatalf("first Echo: %v", err)
	}
	first := time.Since(start)
	t.Logf("server ready %v, client dialed %v, first call answered %v after start", served, dialed, first)
	// Not a speed target (BenchmarkStartToFirstCall measures that); a
	// bound that only a broken start exceeds.
	if first > 20*time.Second {
		t.Fatalf("first call answered %v after start", first)
	}
}

// poisonSize is the value size of the oversized records: over librdkafka's
// default message.max.bytes (1000000), under the broker's limit (1048588).
const poisonSize = 1_020_000

// rawProducer returns a producer that takes records up to 2 MB, for
// producing records by hand.
func (e *env) rawProducer() *kafka.Producer {
	e.t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "message.max.bytes": 2_000_000, "linger.ms": 0})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	return p
}

// produceTo produces one record into partition p of topic and returns its
// offset.
func produceTo(t *testing.T, p *kafka.Producer, topic string, partition int32, key, value []byte, headers ...kafka.Header) int64 {
	t.Helper()
	dc := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition}, Key: key, Value: value, Headers: headers}, dc); err != nil {
		t.Fatal(err)
	}
	m := (<-dc).(*kafka.Message)
	if m.TopicPartition.Error != nil {
		t.Fatal(m.TopicPartition.Error)
	}
	return int64(m.TopicPartition.Offset)
}

// pinged returns a Pinged event's value.
func pinged(t *testing.T, id string, seq int64) []byte {
	t.Helper()
	v, err := proto.Marshal(&testingv1.Pinged{Id: id, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readRecords reads n records of topic from its beginning, within 30s,
// counting only those keep accepts when it is given.
func (e *env) readRecords(topic string, n int, keep ...func(*kafka.Message) bool) []*kafka.Message {
	e.t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.prefix + "reader-" + topic, "auto.offset.reset": "earliest"})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		e.t.Fatal(err)
	}
	var out []*kafka.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		if m, err := c.ReadMessage(time.Second); err == nil && (len(keep) == 0 || keep[0](m)) {
			out = append(out, m)
		}
	}
	if len(out) < n {
		e.t.Fatalf("read %d records of %s, want %d", len(out), topic, n)
	}
	return out
}

// headerMap returns a record's headers by name (the last of each name).
func headerMap(m *kafka.Message) map[string]string {
	hs := map[string]string{}
	for _, h := range m.Headers {
		hs[h.Key] = string(h.Value)
	}
	return hs
}

// runSubscriber runs sub until the test ends.
func runSubscriber(t *testing.T, sub *kafkatransport.Subscriber) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-sub.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
}

// handledSet records the ids of the events handled.
type handledSet struct {
	mu    sync.Mutex
	ids   map[string]bool
	order []string
}

func (h *handledSet) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids[id] = true
	h.order = append(h.order, id)
}

func (h *handledSet) has(ids ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if !h.ids[id] {
			return false
		}
	}
	return true
}

// waitUntil polls cond every 20ms for at most d.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// A 1 MB undecodable event cannot be dead-lettered whole: a stub goes to
// the dead-letter topic, and the events behind it, on every partition, are
// handled.
func TestOversizedEventDeadLetteredAsStub(t *testing.T) {
	e := newEnv(t)
	const group = "stub-test"
	seen := &handledSet{ids: map[string]bool{}}
	sub, err := kafkatransport.NewSubscriber(e.brokers, group, e.common(), kafkatransport.WithPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, func(_ context.Context, p *testingv1.Pinged) error {
		seen.add(fmt.Sprint(p.GetId(), "/", p.GetSeq()))
		return nil
	})
	runSubscriber(t, sub)

	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	poison := produceTo(t, p, topic, 0, []byte("poison"), bytes.Repeat([]byte{0xff}, poisonSize), kafka.Header{Key: "origin", Value: []byte("test")})
	start := time.Now()
	var want []string
	for part := range int32(3) {
		id := fmt.Sprint("p", part)
		produceTo(t, p, topic, part, []byte(id), pinged(t, id, 1))
		want = append(want, id+"/1")
	}
	if !waitUntil(30*time.Second, func() bool { return seen.has(want...) }) {
		t.Fatalf("events behind the oversized record not all handled within 30s")
	}
	t.Logf("events behind a %d-byte poison record handled on every partition after %v", poisonSize, time.Since(start).Round(time.Millisecond))

	stub := e.readRecords(sub.DeadLetterTopic(), 1)[0]
	hs := headerMap(stub)
	for k, v := range map[string]string{
		"dlq-stub": "true", "dlq-size": fmt.Sprint(poisonSize), "dlq-topic": topic, "dlq-partition": "0",
		"dlq-offset": fmt.Sprint(poison), "dlq-attempts": "1", "dlq-group": e.prefix + group, "origin": "test",
	} {
		if hs[k] != v {
			t.Errorf("stub header %s = %q, want %q", k, hs[k], v)
		}
	}
	if !strings.Contains(hs["dlq-error"], "undecodable") {
		t.Errorf("stub dlq-error = %q, want the decode error", hs["dlq-error"])
	}
	if len(stub.Value) != 0 || string(stub.Key) != "poison" {
		t.Errorf("stub value %d bytes, key %q; want none and the original key", len(stub.Value), stub.Key)
	}
	if err := sub.Health(); err != nil {
		t.Errorf("Health after the stub = %v, want nil", err)
	}
}

// A handler stuck on one partition holds up that partition only; Health
// reports it stalled, with the reason, until it moves again.
func TestStuckPartitionDoesNotHoldOthers(t *testing.T) {
	e := newEnv(t)
	seen := &handledSet{ids: map[string]bool{}}
	started, release := make(chan struct{}, 1), make(chan struct{})
	sub, err := kafkatransport.NewSubscriber(e.brokers, "stuck-test", e.common(), kafkatransport.WithPartitions(3),
		kafkatransport.WithStallTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, func(ctx context.Context, p *testingv1.Pinged) error {
		if p.GetId() == "stuck" {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		seen.add(p.GetId())
		return nil
	})
	runSubscriber(t, sub)

	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	produceTo(t, p, topic, 0, []byte("stuck"), pinged(t, "stuck", 1))
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("stuck handler not started within 30s")
	}
	for part := range int32(3) {
		id := fmt.Sprint("p", part)
		produceTo(t, p, topic, part, []byte(id), pinged(t, id, 1))
	}
	// More than a worker's queue holds wait behind the stuck event: the
	// partition is paused, and resumed as they start.
	var behind []string
	for i := range 80 {
		id := fmt.Sprint("behind-", i)
		produceTo(t, p, topic, 0, []byte(id), pinged(t, id, 1))
		behind = append(behind, id)
	}
	if !waitUntil(30*time.Second, func() bool { return seen.has("p1", "p2") }) {
		t.Fatal("events of partitions 1 and 2 not handled within 30s while partition 0 is stuck")
	}
	if seen.has("p0") {
		t.Fatal("the event behind the stuck one on partition 0 was handled before it")
	}
	var reason error
	if !waitUntil(10*time.Second, func() bool { reason = sub.Health(); return reason != nil }) {
		t.Fatal("Health = nil while a handler is stuck past the stall timeout")
	}
	if !strings.Contains(reason.Error(), "partition 0 of "+topic+" stalled") {
		t.Errorf("Health = %q, want partition 0 stalled", reason)
	}
	t.Logf("Health while stuck: %v", reason)
	close(release)
	if !waitUntil(30*time.Second, func() bool { return seen.has(append(behind, "stuck", "p0")...) }) {
		t.Fatal("partition 0 did not move on once released")
	}
	seen.mu.Lock()
	order := slices.Clone(seen.order)
	seen.mu.Unlock()
	want := append([]string{"p0"}, behind...)
	if got := slices.DeleteFunc(order, func(id string) bool { return !slices.Contains(want, id) }); !slices.Equal(got, want) {
		t.Errorf("partition 0 handled %v, want %v", got, want)
	}
	if !waitUntil(10*time.Second, func() bool { reason = sub.Health(); return reason == nil }) {
		t.Fatalf("Health = %v after the partition moved on, want nil", reason)
	}
}

// Requests that cannot be answered, a 1 MB one with a garbage envelope and
// one without an envelope, are dead-lettered to the server group's
// dead-letter topic, and later calls are answered.
func TestUnanswerableRequestsDeadLettered(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)

	p := e.rawProducer()
	topic := e.prefix + testingv1.EchoServiceKafkaTopic
	big := produceTo(t, p, topic, 0, nil, bytes.Repeat([]byte{0xfe}, poisonSize), kafka.Header{Key: "rpc", Value: []byte{0xff, 0xff}})
	bare := produceTo(t, p, topic, 1, []byte("k"), []byte("no envelope"))
	letters := e.readRecords(topic+".dlq", 2)
	for _, m := range letters {
		hs := headerMap(m)
		if hs["dlq-group"] != topic || hs["dlq-attempts"] != "1" || hs["dlq-topic"] != topic {
			t.Errorf("dead letter headers %v: want dlq-group and dlq-topic %s, dlq-attempts 1", hs, topic)
		}
		switch hs["dlq-partition"] + "@" + hs["dlq-offset"] {
		case fmt.Sprint("0@", big):
			if hs["dlq-stub"] != "true" || hs["dlq-size"] != fmt.Sprint(poisonSize) || len(m.Value) != 0 || !strings.Contains(hs["dlq-error"], "undecodable rpc envelope") {
				t.Errorf("oversized request's dead letter: headers %v, %d value bytes; want a stub", hs, len(m.Value))
			}
		case fmt.Sprint("1@", bare):
			if hs["dlq-stub"] != "" || string(m.Value) != "no envelope" || string(m.Key) != "k" || hs["dlq-error"] != "no rpc header" {
				t.Errorf("bare request's dead letter: headers %v, key %q, value %q; want a whole copy", hs, m.Key, m.Value)
			}
		default:
			t.Errorf("unexpected dead letter %v", hs)
		}
	}
	if _, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Message: "still here"}); err != nil {
		t.Fatalf("Echo after unanswerable requests: %v", err)
	}
}

// When the dead-letter topic refuses even a stub, the subscriber logs the
// record, reports the failure on Health and moves on; a later dead letter
// that goes through clears it.
func TestDeadLetterRefused(t *testing.T) {
	e := newEnv(t)
	const group = "refused-test"
	dlq := e.prefix + group + ".dlq"
	res, err := e.admin().CreateTopics(ctxTimeout(t, 20*time.Second), []kafka.TopicSpecification{{Topic: dlq, NumPartitions: 1, ReplicationFactor: -1,
		Config: map[string]string{"max.message.bytes": "100"}}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("create topic: %v %v", err, res)
	}
	seen := &handledSet{ids: map[string]bool{}}
	sub, err := kafkatransport.NewSubscriber(e.brokers, group, e.common(), kafkatransport.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, func(_ context.Context, p *testingv1.Pinged) error {
		seen.add(p.GetId())
		return nil
	})
	runSubscriber(t, sub)

	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	produceTo(t, p, topic, 0, nil, []byte{0xff, 0xff})
	produceTo(t, p, topic, 0, nil, pinged(t, "after", 1))
	if !waitUntil(30*time.Second, func() bool { return seen.has("after") }) {
		t.Fatal("the event behind a record that could not be dead-lettered not handled within 30s")
	}
	reason := sub.Health()
	if reason == nil || !strings.Contains(reason.Error(), "dead-letter produce failing") {
		t.Fatalf("Health = %v, want the dead-letter failure", reason)
	}
	t.Logf("Health after a refused dead letter: %v", reason)

	var alt []kafka.ConfigResourceResult
	if !waitUntil(20*time.Second, func() bool {
		alt, err = e.admin().IncrementalAlterConfigs(ctxTimeout(t, 10*time.Second), []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: dlq,
			Config: []kafka.ConfigEntry{{Name: "max.message.bytes", Value: "1000000", IncrementalOperation: kafka.AlterConfigOpTypeSet}}}})
		return err == nil && alt[0].Error.Code() == kafka.ErrNoError
	}) {
		t.Fatalf("alter topic: %v %v", err, alt)
	}
	// A broker applies an altered topic config a moment after the alter
	// returns: poison again until a dead letter goes through.
	deadline := time.Now().Add(30 * time.Second)
	for {
		produceTo(t, p, topic, 0, nil, []byte{0xff, 0xfe})
		if waitUntil(3*time.Second, func() bool { reason = sub.Health(); return reason == nil }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Health = %v after the dead-letter topic takes records again, want nil", reason)
		}
	}
	// A dead letter went through, so the new limit holds: the next one is a
	// whole copy. (The one that cleared Health may be a stub, when the
	// limit changed between its whole copy and its stub.)
	produceTo(t, p, topic, 0, nil, []byte{0xff, 0xfd})
	for _, m := range e.readRecords(dlq, 1, func(m *kafka.Message) bool { return string(m.Value) == "\xff\xfd" }) {
		if string(m.Value) != "\xff\xfd" || headerMap(m)["dlq-stub"] != "" {
			t.Errorf("dead letter value %q, headers %v; want a whole copy of the later record", m.Value, headerMap(m))
		}
	}
}

// warnings is a slog handler that keeps the messages of warnings and
// errors.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// A second subscriber joining the group takes partitions over from the
// first while events flow: each revoked partition's worker finishes its
// record and commits before the partition moves, no event is lost, and
// each key's events stay in order.
func TestSubscribersRebalance(t *testing.T) {
	e := newEnv(t)
	const group = "rebalance-test"
	var mu sync.Mutex
	handled := map[string][]int64{} // id -> seqs in handling order
	handler := func(_ context.Context, p *testingv1.Pinged) error {
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		handled[p.GetId()] = append(handled[p.GetId()], p.GetSeq())
		return nil
	}
	warned := &warnings{}
	newSub := func() *kafkatransport.Subscriber {
		sub, err := kafkatransport.NewSubscriber(e.brokers, group, e.common(), kafkatransport.WithPartitions(3),
			kafkatransport.WithLogger(slog.New(warned)))
		if err != nil {
			t.Fatal(err)
		}
		testingv1.SubscribePinged(sub, handler)
		return sub
	}
	first := newSub()
	runSubscriber(t, first)
	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	const perKey = 60
	ids := []string{"k0", "k1", "k2"}
	for seq := range int64(perKey) {
		if seq == perKey/3 {
			runSubscriber(t, newSub()) // joins while events flow
		}
		for part, id := range ids {
			produceTo(t, p, topic, int32(part), []byte(id), pinged(t, id, seq))
		}
	}
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			seen := map[int64]bool{}
			for _, s := range handled[id] {
				seen[s] = true
			}
			if len(seen) < perKey {
				return false
			}
		}
		return true
	}
	if !waitUntil(30*time.Second, complete) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("not every event handled within 30s: %v", handled)
	}
	mu.Lock()
	for _, id := range ids {
		// A redelivered event runs again, and those after it again in
		// order; never does an event run before an earlier one ran.
		top := int64(-1)
		for _, s := range handled[id] {
			if s > top+1 {
				t.Errorf("%s: event %d handled before %d: %v", id, s, top+1, handled[id])
				break
			}
			top = max(top, s)
		}
	}
	mu.Unlock()
	warned.mu.Lock()
	defer warned.mu.Unlock()
	for _, m := range warned.msgs {
		if strings.Contains(m, "revoking") {
			t.Errorf("warning on revoke: %s", m)
		}
	}
}
