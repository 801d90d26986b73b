package kafkatransport

import (
	"context"
	"slices"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// attempts are the requests of one call: the first, its retries and its
// hedges.
type attempts struct {
	c      *ClientConn
	ctx    context.Context
	sh     rpcStats
	span   trace.Span
	topic  string
	method string
	req    proto.Message
	key    []byte
	kind   retryKind
	state  *topicState // nil: retries off

	results chan callResult // every attempt's end, each once
	all     []*pendingCall  // every attempt
	live    []*pendingCall  // attempts waiting for their reply
	n       int             // attempts made
	retries int             // retries made
	hedges  int             // hedges made
	sent    time.Time       // the first request's send
}

// run sends the call's first request, and more as the policy allows, and
// returns the reply that ends the call or the error it fails with.
func (a *attempts) run() (res callResult, err error) {
	pol := &a.c.cfg.retry
	a.results = make(chan callResult, pol.MaxAttempts)
	var hedge *time.Timer
	defer func() {
		if hedge != nil {
			hedge.Stop()
		}
		a.end(err == nil)
	}()
	for {
		if err := a.send(); err != nil {
			if len(a.live) == 0 {
				reason := unsentReason(err)
				if reason != "" {
					a.fail()
				}
				if !a.retry(reason) {
					return callResult{}, unwrapUnsent(err)
				}
				continue
			}
			// A hedge that could not be sent: wait for the others.
			a.fail()
		} else if a.kind == retryHedged && a.state != nil && a.n < pol.MaxAttempts {
			if hedge == nil {
				hedge = time.NewTimer(pol.HedgeDelay)
			} else {
				hedge.Reset(pol.HedgeDelay)
			}
		}
		if next := a.wait(hedge); next != nil {
			return next.res, next.err
		}
	}
}

// outcome is how a call ended.
type outcome struct {
	res callResult
	err error
}

// wait waits for the live attempts and returns how the call ended, or nil
// when it should send another attempt: a retry (after its backoff) or a
// hedge.
func (a *attempts) wait(hedge *time.Timer) *outcome {
	pol := &a.c.cfg.retry
	for {
		var hedgeC <-chan time.Time
		if hedge != nil && a.n < pol.MaxAttempts {
			hedgeC = hedge.C
		}
		select {
		case res := <-a.results:
			a.ended(res.pc)
			if res.err == nil && a.state != nil {
				a.state.heard(res.pc.partition.Load())
			}
			reason := a.retryReason(res)
			if reason == "" {
				if res.err == nil && a.state != nil {
					a.state.replied()
				}
				return &outcome{res, res.err}
			}
			a.fail()
			if len(a.live) > 0 {
				continue // another attempt may still answer
			}
			if a.retry(reason) {
				return nil
			}
			if res.err != nil {
				return &outcome{err: res.err}
			}
			return &outcome{res: res} // the server's Unavailable
		case <-hedgeC:
			for _, pc := range a.live {
				a.state.noReplySince(pc.partition.Load(), pc.sentAt)
			}
			if a.ctx.Err() != nil || !a.state.allowRetry() {
				continue
			}
			a.hedges++
			a.note(RetryHedge)
			return nil
		case <-a.ctx.Done():
			return &outcome{err: status.FromContextError(a.ctx.Err()).Err()}
		}
	}
}

// retryReason returns why the attempt that ended with res may be sent
// again (RetryUnsent or RetryUnavailable), or "" when its result ends the
// call.
func (a *attempts) retryReason(res callResult) string {
	switch {
	case res.err != nil && res.unsent:
		return RetryUnsent
	case res.err == nil && res.reply.code == int32(codes.Unavailable) && a.kind >= retrySafe:
		return RetryUnavailable
	}
	return ""
}

// retry reports whether the call sends another request after its last
// attempt failed for reason ("" for a failure that is not retried), having
// waited the backoff: not when the policy, the throttle or the deadline
// forbid it.
func (a *attempts) retry(reason string) bool {
	pol := &a.c.cfg.retry
	if reason == "" || a.state == nil {
		return false
	}
	if a.n >= pol.MaxAttempts || !a.state.allowRetry() {
		return false
	}
	a.retries++
	wait := pol.backoff(a.retries)
	if d, ok := a.ctx.Deadline(); ok && time.Until(d) < wait {
		return false
	}
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-a.ctx.Done():
		t.Stop()
		return false
	}
	a.note(reason)
	return true
}

// send sends the call's next attempt: to the partition its key gives,
// or, without a key, to the one the topic's state picks.
func (a *attempts) send() error {
	c := a.c
	partition := kafka.PartitionAny
	if a.key == nil && a.state != nil {
		if a.kind == retryHedged {
			c.watchPartitions(a.state)
		}
		partition = a.state.pick(a.partitions(), c.cfg.retry.HedgeDelay)
	}
	pc := &pendingCall{seq: c.seq.Add(1), method: a.method, ch: a.results, span: a.span, sentAt: time.Now()}
	pc.partition.Store(partition)
	a.n++
	a.all = append(a.all, pc)
	sh := a.sh
	if a.n > 1 {
		sh = nil // the stats handler sees one request per call
	}
	if err := c.send(a.ctx, sh, a.topic, a.method, a.req, a.key, partition, pc); err != nil {
		return err
	}
	a.live = append(a.live, pc)
	if a.sent.IsZero() {
		a.sent = pc.sentAt
		c.cfg.metrics.CallStarted(serviceOf(a.method))
	}
	return nil
}

// partitions returns the partitions the call's attempts went to, as far
// as they are known.
func (a *attempts) partitions() []int32 {
	var ps []int32
	for _, pc := range a.all {
		if p := pc.partition.Load(); p >= 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

// ended removes pc from the live attempts.
func (a *attempts) ended(pc *pendingCall) {
	a.live = slices.DeleteFunc(a.live, func(l *pendingCall) bool { return l == pc })
}

// fail takes a throttle token for an attempt that failed or a hedge.
func (a *attempts) fail() {
	if a.state != nil {
		a.state.failed()
	}
}

// note counts the attempt about to be sent again for reason, and records
// it on the call's span.
func (a *attempts) note(reason string) {
	if m, ok := a.c.cfg.metrics.(RetryMetrics); ok {
		m.CallRetried(serviceOf(a.method), reason)
	}
	if a.span != nil && a.span.IsRecording() {
		a.span.AddEvent("kgrpc.retry", trace.WithAttributes(keyRetryReason.String(reason), keyAttempts.Int(a.n+1)))
	}
}

// end abandons the attempts still waiting (their replies, should they
// come, are ignored as late) and reports the call's end to the metrics. A
// call that hedged and got no reply takes a throttle token for each of
// them: a hedge costs nothing while some attempt answers. A call that got
// no reply, however it was sent, makes the partitions of the attempts it
// waited for longer than the hedge delay suspect, unless they answered
// other calls since.
func (a *attempts) end(replied bool) {
	hedgeDelay := a.c.cfg.retry.HedgeDelay
	for _, pc := range a.live {
		a.c.finish(pc.seq, callResult{})
		if replied || a.state == nil {
			continue
		}
		if a.hedges > 0 {
			a.fail()
		}
		if hedgeDelay > 0 && time.Since(pc.sentAt) >= hedgeDelay {
			a.state.noReplySince(pc.partition.Load(), pc.sentAt)
		}
	}
	a.live = nil
	if !a.sent.IsZero() {
		a.c.cfg.metrics.CallEnded(serviceOf(a.method), time.Since(a.sent), replied)
	}
}

// unsentError is a failure of a request that never reached the broker, so
// that no server can have run it: any call may send it again.
type unsentError struct{ err error }

func (e unsentError) Error() string { return e.err.Error() }

// unsentReason returns RetryUnsent for an unsentError, else "".
func unsentReason(err error) string {
	if _, ok := err.(unsentError); ok {
		return RetryUnsent
	}
	return ""
}

// unwrapUnsent returns the status error an unsentError carries, or err.
func unwrapUnsent(err error) error {
	if u, ok := err.(unsentError); ok {
		return u.err
	}
	return err
}
