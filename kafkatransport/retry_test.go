package kafkatransport_test

// Safe retries and hedges of unary calls (RetryPolicy).

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkaprom"
)

func (e *echo) Lookup(ctx context.Context, req *testingv1.LookupRequest) (*testingv1.LookupResponse, error) {
	e.calls.Add(1)
	e.mu.Lock()
	e.started["lookup:"+req.GetId()]++
	e.mu.Unlock()
	select {
	case <-time.After(time.Duration(req.GetSleepMs()) * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	info, _ := kafkatransport.RequestFromContext(ctx)
	return &testingv1.LookupResponse{Id: req.GetId(), ServedBy: e.name, Partition: info.Partition}, nil
}

func (e *echo) Put(ctx context.Context, req *testingv1.PutRequest) (*testingv1.PutResponse, error) {
	e.calls.Add(1)
	info, _ := kafkatransport.RequestFromContext(ctx)
	e.mu.Lock()
	e.started["put:"+req.GetKey()]++
	n := e.started["put:"+req.GetKey()]
	e.started[fmt.Sprintf("put:%s:partition:%d", req.GetKey(), info.Partition)]++
	e.mu.Unlock()
	if n <= int(req.GetFailTimes()) {
		return nil, status.Errorf(codes.Unavailable, "put %d of %q fails", n, req.GetKey())
	}
	return &testingv1.PutResponse{Attempts: int32(n), Partition: info.Partition}, nil
}

// retryCounts is a kafkatransport.Metrics that counts retries by reason.
// kafkaprom counts retries: the ClientConn finds CallRetried on it.
var _ kafkatransport.RetryMetrics = (*kafkaprom.Metrics)(nil)

type retryCounts struct {
	*kafkaprom.Metrics
	mu sync.Mutex
	n  map[string]int
}

func newRetryCounts() *retryCounts {
	return &retryCounts{Metrics: kafkaprom.New(), n: map[string]int{}}
}

func (m *retryCounts) CallRetried(service, reason string) {
	m.Metrics.CallRetried(service, reason)
	m.mu.Lock()
	m.n[reason]++
	m.mu.Unlock()
}

func (m *retryCounts) get(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[reason]
}

// retrying serves an echo instance on a new env and dials a client of it
// with policy p, counting its retries; it returns once the service
// answers.
func retrying(t *testing.T, p kafkatransport.RetryPolicy) (*env, *echo, *retryCounts, *kafkatransport.ClientConn, testingv1.EchoServiceClient) {
	t.Helper()
	e := newEnv(t)
	srv := newEcho("a")
	e.serve(srv)
	counts := newRetryCounts()
	cc := e.dial(kafkatransport.WithMetrics(counts), kafkatransport.WithRetry(p))
	c := testingv1.NewEchoServiceKafkaClient(cc)
	waitServing(t, c)
	return e, srv, counts, cc, c
}

// quick is a policy with short waits: 3 attempts, 1ms backoff, hedges
// after 50ms.
var quick = kafkatransport.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, HedgeDelay: 50 * time.Millisecond}

// noRetry turns retries and hedges off.
var noRetry = kafkatransport.WithRetry(kafkatransport.RetryPolicy{MaxAttempts: 1})

// TestHedgedReadsSurviveKilledInstance kills one of two instances of a
// service and reads at once, with a deadline shorter than the group's
// session timeout (6s): until the group gives the dead instance's
// partitions to the survivor, nobody reads the requests stored there.
// With the default policy every read succeeds (hedged to the survivor's
// partitions); without retries some fail.
func TestHedgedReadsSurviveKilledInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process; skipped with -short")
	}
	e := newEnv(t)
	cmd := startHelper(t, e)
	counts := newRetryCounts()
	hedged := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithMetrics(counts)))
	plain := testingv1.NewEchoServiceKafkaClient(e.dial(noRetry))
	waitServing(t, hedged)
	e.serve(newEcho("survivor"))
	// Both instances hold partitions once both have answered reads (each
	// read goes to a random partition).
	served := map[string]bool{}
	for deadline := time.Now().Add(60 * time.Second); !served["helper"] || !served["survivor"]; {
		if time.Now().After(deadline) {
			t.Fatalf("served by %v, want the helper and the survivor", served)
		}
		for _, c := range []testingv1.EchoServiceClient{hedged, plain} {
			if resp, err := c.Lookup(ctxTimeout(t, 10*time.Second), &testingv1.LookupRequest{Id: "warm-up"}); err == nil {
				served[resp.GetServedBy()] = true
			}
		}
		time.Sleep(15 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	const reads, deadline = 50, 4 * time.Second
	type result struct {
		took time.Duration
		err  error
	}
	run := func(c testingv1.EchoServiceClient, name string) []result {
		results := make([]result, reads)
		var wg sync.WaitGroup
		for i := range reads {
			// 12ms apart: the producer sticks to one partition for 10ms.
			time.Sleep(12 * time.Millisecond)
			wg.Go(func() {
				start := time.Now()
				_, err := c.Lookup(ctxTimeout(t, deadline), &testingv1.LookupRequest{Id: fmt.Sprint(name, i)})
				results[i] = result{time.Since(start), err}
			})
		}
		wg.Wait()
		return results
	}
	// Reads with the default policy right after the kill, then as many
	// again once the first have found the dead partitions (while the
	// group has not yet handed them to the survivor), beside reads
	// without retries.
	var withRetries, later, without []result
	var hedgesFirst int
	var wg sync.WaitGroup
	wg.Go(func() {
		withRetries = run(hedged, "hedged-")
		hedgesFirst = counts.get(kafkatransport.RetryHedge)
		later = run(hedged, "later-")
	})
	wg.Go(func() { without = run(plain, "plain-") })
	wg.Wait()
	t.Logf("the batches ended %v after the SIGKILL", time.Since(killed).Round(time.Millisecond))

	summary := func(name string, rs []result) time.Duration {
		var took []time.Duration
		for i, r := range rs {
			if r.err != nil {
				t.Errorf("%s read %d: %v after %v", name, i, r.err, r.took)
			}
			took = append(took, r.took)
		}
		slices.Sort(took)
		t.Logf("%s: %d reads, p50 %v, p99 %v, max %v", name, reads,
			took[len(took)/2].Round(time.Millisecond), took[len(took)*99/100].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		return took[len(took)-1]
	}
	summary("default policy, at once", withRetries)
	t.Logf("%d hedges at once, %d later", hedgesFirst, counts.get(kafkatransport.RetryHedge)-hedgesFirst)
	// The dead partitions are suspect now: reads go to the others.
	if slowest := summary("default policy, later", later); slowest >= time.Second {
		t.Errorf("a later read took %v: it went to a dead partition and waited for the hedge delay", slowest)
	}
	failed := 0
	for _, r := range without {
		if r.err != nil {
			failed++
			if status.Code(r.err) != codes.DeadlineExceeded {
				t.Errorf("read without retries: %v, want DeadlineExceeded", r.err)
			}
		}
	}
	t.Logf("%d of %d reads without retries failed", failed, reads)
	if failed == 0 {
		t.Error("every read without retries succeeded: the test did not hit the dead instance's partitions")
	}
	if counts.get(kafkatransport.RetryHedge) == 0 {
		t.Error("no hedges counted")
	}
}

func TestRetryUnsentRequest(t *testing.T) {
	e, srv, counts, cc, c := retrying(t, kafkatransport.DefaultRetryPolicy())

	// Sleep has no idempotency level: only a request the broker never
	// had is sent again.
	kafkatransport.FailProducesForTest(cc, 2)
	if _, err := c.Sleep(ctxTimeout(t, 20*time.Second), &testingv1.SleepRequest{Id: "unsent"}); err != nil {
		t.Fatalf("Sleep after 2 refused produces = %v, want it retried", err)
	}
	if n := srv.startedCount("unsent"); n != 1 {
		t.Errorf("the server ran the call %d times, want 1", n)
	}
	if n := counts.get(kafkatransport.RetryUnsent); n != 2 {
		t.Errorf("%d unsent retries counted, want 2", n)
	}

	off := e.dial(noRetry)
	kafkatransport.FailProducesForTest(off, 1)
	_, err := testingv1.NewEchoServiceKafkaClient(off).Sleep(ctxTimeout(t, 20*time.Second), &testingv1.SleepRequest{Id: "unsent-off"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Sleep without retries after a refused produce = %v, want Unavailable", err)
	}
}

func TestSideEffectsNotRetriedOnceSent(t *testing.T) {
	_, srv, counts, _, c := retrying(t, quick)

	// A slow reply: no hedge, however long it takes.
	if _, err := c.Sleep(ctxTimeout(t, 20*time.Second), &testingv1.SleepRequest{Id: "slow", DurationMs: 500}); err != nil {
		t.Fatal(err)
	}
	// A lost reply: the call ends at its deadline, and is not run again.
	_, err := c.Sleep(ctxTimeout(t, 300*time.Millisecond), &testingv1.SleepRequest{Id: "lost", DurationMs: 1000})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Sleep past its deadline = %v, want DeadlineExceeded", err)
	}
	// An Unavailable reply.
	_, err = c.Fail(ctxTimeout(t, 20*time.Second), &testingv1.FailRequest{Code: int32(codes.Unavailable), Message: "down"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Fail = %v, want Unavailable", err)
	}
	time.Sleep(1200 * time.Millisecond) // what a retry would have run
	for _, id := range []string{"slow", "lost", "fail:down"} {
		if n := srv.startedCount(id); n != 1 {
			t.Errorf("%s ran %d times, want 1", id, n)
		}
	}
	for _, reason := range []string{kafkatransport.RetryHedge, kafkatransport.RetryUnavailable, kafkatransport.RetryUnsent} {
		if n := counts.get(reason); n != 0 {
			t.Errorf("%d retries %q, want none", n, reason)
		}
	}
}

func TestIdempotentRetriedOnUnavailable(t *testing.T) {
	e, srv, counts, _, c := retrying(t, kafkatransport.RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, HedgeDelay: time.Second})

	resp, err := c.Put(ctxTimeout(t, 20*time.Second), &testingv1.PutRequest{Key: "k1", FailTimes: 2})
	if err != nil || resp.GetAttempts() != 3 {
		t.Fatalf("Put failing twice = %v, %v; want it to succeed at the third attempt", resp, err)
	}
	if n := srv.startedCount(fmt.Sprintf("put:k1:partition:%d", resp.GetPartition())); n != 3 {
		t.Errorf("%d attempts on partition %d, want all 3 there (same key, same partition)", n, resp.GetPartition())
	}
	if n := counts.get(kafkatransport.RetryUnavailable); n != 2 {
		t.Errorf("%d retries counted, want 2", n)
	}

	t.Run("backoff never past the deadline", func(t *testing.T) {
		c := testingv1.NewEchoServiceKafkaClient(e.dial(
			kafkatransport.WithRetry(kafkatransport.RetryPolicy{MaxAttempts: 10, InitialBackoff: 800 * time.Millisecond, MaxBackoff: 10 * time.Second})))
		// The deadline leaves the two attempts' round trips a second
		// beyond the first backoff: under -race on a loaded machine one
		// round trip measured 250 ms, and a 500 ms deadline with a 200 ms
		// backoff failed DeadlineExceeded on the second attempt's reply.
		const deadline = 2 * time.Second
		start := time.Now()
		_, err := c.Put(ctxTimeout(t, deadline), &testingv1.PutRequest{Key: "k2", FailTimes: 100})
		took := time.Since(start)
		if status.Code(err) != codes.Unavailable || took >= deadline {
			t.Fatalf("Put = %v after %v, want Unavailable before the %v deadline", err, took, deadline)
		}
		// 800ms ±20%, then 1.6s ±20% does not fit: 2 attempts.
		if n := srv.startedCount("put:k2"); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})
}

func TestRetryThrottle(t *testing.T) {
	e, srv, counts, _, c := retrying(t, quick)

	// A service whose every answer is Unavailable: 10 tokens, one per
	// failed attempt, retries while more than 5 are left. Call 1 makes
	// 3 attempts (10 -> 7), call 2 makes 2 (-> 5), then one each.
	for i := range 20 {
		if _, err := c.Put(ctxTimeout(t, 20*time.Second), &testingv1.PutRequest{Key: fmt.Sprint("down-", i), FailTimes: 100}); status.Code(err) != codes.Unavailable {
			t.Fatalf("Put = %v, want Unavailable", err)
		}
	}
	runs := 0
	for i := range 20 {
		runs += srv.startedCount(fmt.Sprint("put:down-", i))
	}
	if runs != 23 || counts.get(kafkatransport.RetryUnavailable) != 3 {
		t.Errorf("20 calls ran %d times with %d retries, want 23 and 3", runs, counts.get(kafkatransport.RetryUnavailable))
	}

	t.Run("hedges of a service that does not answer", func(t *testing.T) {
		// A topic nobody serves: every read waits for its deadline. A
		// call that hedged and got no reply takes a token per attempt
		// from a fresh bucket of 10: 3, 3, then no more hedges.
		const silent = "kgrpc.testing.v1.Silent"
		e.createTopic(silent, 6)
		counts := newRetryCounts()
		cc := e.dial(kafkatransport.WithMetrics(counts), kafkatransport.WithRetry(quick))
		conn := cc.Service(kafkatransport.ServiceSpec{Name: "kgrpc.testing.v1.EchoService", Topic: silent})
		c := testingv1.NewEchoServiceClient(conn)
		for range 6 {
			_, err := c.Lookup(ctxTimeout(t, 300*time.Millisecond), &testingv1.LookupRequest{Id: "nobody"})
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("Lookup = %v, want DeadlineExceeded", err)
			}
		}
		if n := counts.get(kafkatransport.RetryHedge); n != 4 {
			t.Errorf("%d hedges, want 4", n)
		}
	})
}

// spanRecorder is a stats.Handler whose calls get a span that records
// attributes and events, and which counts the requests it is told of.
type spanRecorder struct {
	span        *recordingSpan
	outPayloads atomic.Int64
}

func (r *spanRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return trace.ContextWithSpan(ctx, r.span)
}

func (r *spanRecorder) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutPayload); ok {
		r.outPayloads.Add(1)
	}
}

func (r *spanRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (r *spanRecorder) HandleConn(context.Context, stats.ConnStats)                       {}

// recordingSpan is a span that keeps its attributes and events.
type recordingSpan struct {
	trace.Span // a span that records nothing, for the rest of the interface
	mu         sync.Mutex
	attrs      map[attribute.Key]attribute.Value
	events     []string
}

func newRecordingSpan() *recordingSpan {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	return &recordingSpan{Span: trace.SpanFromContext(trace.ContextWithSpanContext(context.Background(), sc)), attrs: map[attribute.Key]attribute.Value{}}
}

func (s *recordingSpan) IsRecording() bool { return true }

func (s *recordingSpan) SetAttributes(kvs ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range kvs {
		s.attrs[kv.Key] = kv.Value
	}
}

func (s *recordingSpan) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range cfg.Attributes() {
		if kv.Key == "kgrpc.retry.reason" {
			name += " " + kv.Value.AsString()
		}
	}
	s.events = append(s.events, name)
}

func TestHedgesOfOneCall(t *testing.T) {
	// A read slower than the hedge delay: hedged twice, 50ms apart, the
	// first reply (the first attempt's, at 300ms) ends the call, and the
	// others' replies are ignored.
	rec := &spanRecorder{span: newRecordingSpan()}
	e, srv, counts, _, _ := retrying(t, quick)
	c := testingv1.NewEchoServiceKafkaClient(e.dial(kafkatransport.WithMetrics(counts), kafkatransport.WithRetry(quick), kafkatransport.WithStatsHandler(rec)))
	resp, err := c.Lookup(ctxTimeout(t, 20*time.Second), &testingv1.LookupRequest{Id: "slow", SleepMs: 300})
	if err != nil || resp.GetId() != "slow" {
		t.Fatalf("Lookup = %v, %v", resp, err)
	}
	if n := counts.get(kafkatransport.RetryHedge); n != 2 {
		t.Errorf("%d hedges, want 2", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.startedCount("lookup:slow") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.startedCount("lookup:slow"); n != 3 {
		t.Errorf("the server ran %d attempts, want 3", n)
	}
	span := rec.span
	span.mu.Lock()
	defer span.mu.Unlock()
	if got := span.attrs["kgrpc.attempts"]; got.AsInt64() != 3 {
		t.Errorf("kgrpc.attempts = %v, want 3", got.Emit())
	}
	if want := []string{"kgrpc.retry hedge", "kgrpc.retry hedge"}; !slices.Equal(span.events, want) {
		t.Errorf("span events %q, want %q", span.events, want)
	}
	if n := rec.outPayloads.Load(); n != 1 {
		t.Errorf("the stats handler saw %d requests, want 1 per call", n)
	}
}
