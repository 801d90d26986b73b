package kafkatransport

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// RetryPolicy says when a ClientConn sends a unary call's request again,
// always within the call's deadline and as a new request with its own
// correlation id (the wire does not change). Which calls it applies to
// depends on what running the request twice would do, which the method's
// protobuf idempotency_level says (IdempotencyLevelOf):
//
//   - any method: a request that never reached the broker (the producer
//     refused it, or the broker rejected it before storing it) is sent
//     again after a backoff; no server can have run it.
//   - IDEMPOTENT methods, and NO_SIDE_EFFECTS methods with a partition
//     key: also a reply of Unavailable is retried after a backoff, with
//     the same key, so on the same partition, keeping the key's order.
//   - NO_SIDE_EFFECTS methods without a partition key (reads): also
//     hedged. When no reply came within HedgeDelay, another request is
//     sent to a partition that no earlier attempt of the call used and
//     that the client does not suspect; the earlier ones stay pending and
//     the first reply of any attempt ends the call.
//
// A method with side effects is never sent again once the broker may have
// stored its request: its caller repeats it with an idempotency key
// (idempotency.RetryUnavailable), and the server's idempotency interceptor
// runs it once per key.
//
// Retries and hedges are throttled per request topic as in gRPC's
// retryThrottling: a bucket of 10 tokens loses one for each attempt that
// failed (never sent, or answered Unavailable) and, when a call that
// hedged ends without a reply, one for each of its attempts still
// waiting; it gains 0.1 for each call that got a reply. While it holds 5
// or fewer tokens, no call is retried or hedged, so a service that is down
// does not get several times its load, while hedges that find the live
// instances of a service cost nothing.
type RetryPolicy struct {
	// MaxAttempts bounds the requests one call sends, its first included.
	// At least 1; 1 sends every request once.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each later one
	// waits twice as long, at most MaxBackoff. Each wait is jittered by
	// ±20%, and a retry whose wait would end past the call's deadline is
	// not made. Positive, and MaxBackoff at least InitialBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// HedgeDelay is how long a read without a partition key waits for its
	// reply before the next attempt is sent beside it; 0 turns hedging off.
	HedgeDelay time.Duration
}

// DefaultRetryPolicy returns the policy of a ClientConn without WithRetry:
// 3 attempts, backoff from 100ms to 1s, and hedges after 1s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, HedgeDelay: time.Second}
}

// WithRetry sets when the client sends a unary call's request again (see
// RetryPolicy); RetryPolicy{MaxAttempts: 1} turns retries and hedges off.
// Streams are never retried. Default: DefaultRetryPolicy(). Client.
func WithRetry(p RetryPolicy) ClientOption {
	return clientOption(func(c *config) error {
		if p.MaxAttempts < 1 || (p.MaxAttempts > 1 && (p.InitialBackoff <= 0 || p.MaxBackoff < p.InitialBackoff)) || p.HedgeDelay < 0 {
			return invalid("WithRetry", fmt.Sprintf("%+v", p), "at least 1 attempt, a positive InitialBackoff, a MaxBackoff of at least InitialBackoff and a HedgeDelay of 0 or more")
		}
		c.retry = p
		return nil
	})
}

// backoff returns the jittered wait before retry n (1 for the first).
func (p *RetryPolicy) backoff(n int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	return d - d/5 + rand.N(d/5*2+1)
}

// Reasons of RetryMetrics.CallRetried.
const (
	RetryUnsent      = "unsent"      // the request never reached the broker
	RetryUnavailable = "unavailable" // the server answered Unavailable
	RetryHedge       = "hedge"       // no reply within the hedge delay
)

// retryKind is what a call may send again, from its method's idempotency
// level and whether its request has a key.
type retryKind uint8

const (
	retryUnsentOnly retryKind = iota // side effects: only what never reached the broker
	retrySafe                        // also Unavailable replies, same key
	retryHedged                      // also hedges, to other partitions
)

// kindOf returns the retry kind of a call of method, keyed or not.
func (c *ClientConn) kindOf(method string, keyed bool) retryKind {
	switch c.levels.of(method) {
	case descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		if !keyed && c.cfg.retry.HedgeDelay > 0 {
			return retryHedged
		}
		return retrySafe
	case descriptorpb.MethodOptions_IDEMPOTENT:
		return retrySafe
	}
	return retryUnsentOnly
}

// methodLevels caches IdempotencyLevelOf by full method name.
type methodLevels struct{ m sync.Map }

func (l *methodLevels) of(method string) descriptorpb.MethodOptions_IdempotencyLevel {
	if v, ok := l.m.Load(method); ok {
		return v.(descriptorpb.MethodOptions_IdempotencyLevel)
	}
	level := IdempotencyLevelOf(method)
	l.m.Store(method, level)
	return level
}

// IdempotencyLevelOf returns the idempotency level of the method named
// fullMethod ("/pkg.Service/Method") as its service descriptor in
// protoregistry.GlobalFiles gives it (every generated service registers
// there): IDEMPOTENCY_UNKNOWN, meaning side effects, for a method without
// the option or one it does not find. The methods of
// grpc.health.v1.Health, whose proto file does not say so, are
// NO_SIDE_EFFECTS.
func IdempotencyLevelOf(fullMethod string) descriptorpb.MethodOptions_IdempotencyLevel {
	md := MethodDescriptorOf(fullMethod)
	if md == nil {
		return descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
	}
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	if l := opts.GetIdempotencyLevel(); l != descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN || md.Parent().FullName() != "grpc.health.v1.Health" {
		return l
	}
	return descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// MethodDescriptorOf returns the descriptor of the method named
// fullMethod ("/pkg.Service/Method") in protoregistry.GlobalFiles, or nil.
func MethodDescriptorOf(fullMethod string) protoreflect.MethodDescriptor {
	svc, name, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	return sd.Methods().ByName(protoreflect.Name(name))
}

// Throttling of retries and hedges per request topic (gRPC's
// retryThrottling with maxTokens 10 and tokenRatio 0.1).
const (
	throttleMaxTokens = 10
	throttleRefund    = 0.1
)

// suspectFor is how long a partition stays suspect, unless a reply from
// it clears it sooner: longer than a consumer group takes to hand a dead
// instance's partitions to another (session.timeout.ms, 6s), so that the
// calls it holds are served before new ones go there again.
const suspectFor = 10 * time.Second

// metadataRefresh is how often a topic's partition count is read again
// while calls use it.
const metadataRefresh = 30 * time.Second

// topicState is what a ClientConn knows of the request topic of a service:
// the throttle of its retries and, for topics that hedged calls use, the
// health of its partitions.
type topicState struct {
	topic string

	mu         sync.Mutex
	tokens     float64
	partitions int         // 0: unknown
	lastReply  []time.Time // per partition: the last reply to a request stored there
	suspect    []time.Time // per partition: suspect until then
	refreshing bool
	refreshed  time.Time // the last partition count read
}

// state returns the state of topic, making it on first use.
func (c *ClientConn) state(topic string) *topicState {
	if v, ok := c.topics.Load(topic); ok {
		return v.(*topicState)
	}
	v, _ := c.topics.LoadOrStore(topic, &topicState{topic: topic, tokens: throttleMaxTokens})
	return v.(*topicState)
}

// allowRetry reports whether the throttle lets a call retry or hedge.
func (t *topicState) allowRetry() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tokens > throttleMaxTokens/2
}

// failed takes a token for an attempt that failed or a hedge.
func (t *topicState) failed() {
	t.mu.Lock()
	t.tokens = max(t.tokens-1, 0)
	t.mu.Unlock()
}

// replied gives back part of a token for a call that got a reply.
func (t *topicState) replied() {
	t.mu.Lock()
	t.tokens = min(t.tokens+throttleRefund, throttleMaxTokens)
	t.mu.Unlock()
}

// heard clears partition, where a request that got a reply was stored
// (-1: unknown), of suspicion.
func (t *topicState) heard(partition int32) {
	now := time.Now()
	t.mu.Lock()
	if partition >= 0 && int(partition) < t.partitions {
		t.lastReply[partition] = now
		t.suspect[partition] = time.Time{}
	}
	t.mu.Unlock()
}

// noReplySince makes partition suspect unless it answered a request after
// since.
func (t *topicState) noReplySince(partition int32, since time.Time) {
	now := time.Now()
	t.mu.Lock()
	if partition >= 0 && int(partition) < t.partitions && t.lastReply[partition].Before(since) {
		t.suspect[partition] = now.Add(suspectFor)
	}
	t.mu.Unlock()
}

// pick returns the partition of an attempt of a call without a key, given
// the partitions its earlier attempts used: kafka.PartitionAny, leaving
// the choice to the producer, for a first attempt while no partition is
// suspect or whenever the partition count is unknown; else one that is not
// suspect and not used, preferring, for a hedge, one that answered within
// recent, the hedge delay.
func (t *topicState) pick(used []int32, recent time.Duration) int32 {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.partitions == 0 || len(used) == 0 && !slices.ContainsFunc(t.suspect, func(until time.Time) bool { return until.After(now) }) {
		return kafka.PartitionAny
	}
	var good, ok, fresh []int32 // not suspect nor used; also answered recently; not used
	for p := range int32(t.partitions) {
		if slices.Contains(used, p) {
			continue
		}
		fresh = append(fresh, p)
		if t.suspect[p].After(now) {
			continue
		}
		ok = append(ok, p)
		if now.Sub(t.lastReply[p]) < recent {
			good = append(good, p)
		}
	}
	switch {
	case len(used) > 0 && len(good) > 0:
		return good[rand.IntN(len(good))]
	case len(ok) > 0:
		return ok[rand.IntN(len(ok))]
	case len(fresh) > 0:
		return fresh[rand.IntN(len(fresh))]
	}
	return kafka.PartitionAny
}

// watchPartitions starts reading the partition count of t's topic in the
// background, when it is unknown or old, so that calls can choose among
// its partitions; it never blocks a call.
func (c *ClientConn) watchPartitions(t *topicState) {
	now := time.Now()
	t.mu.Lock()
	due := !t.refreshing && (t.partitions == 0 && now.Sub(t.refreshed) > time.Second || now.Sub(t.refreshed) > metadataRefresh)
	if due {
		t.refreshing = true
	}
	t.mu.Unlock()
	if !due {
		return
	}
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.metadata.Add(1) // Close waits for it before closing the admin client
	}
	c.mu.Unlock()
	if closed {
		return
	}
	go func() {
		defer c.metadata.Done()
		n, err := partitionCount(c.admin, t.topic, 5000)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.refreshing, t.refreshed = false, time.Now()
		if err != nil || n <= t.partitions {
			return // unknown topic, a failure, or no new partitions
		}
		t.lastReply = append(t.lastReply, make([]time.Time, n-t.partitions)...)
		t.suspect = append(t.suspect, make([]time.Time, n-t.partitions)...)
		t.partitions = n
	}()
}
