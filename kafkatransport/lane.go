package kafkatransport

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lane consumes one service's request topic.
type lane struct {
	s        *Server
	svc      *service
	topic    string
	consumer *kafka.Consumer
	tracker  *tracker
	keys     *keyQueues

	// replyTopics are the topics the server replies to
	// (config.allowedReplyTopics), each mapped to itself, so that a
	// request does not allocate its reply topic's name. Read only.
	replyTopics map[string]string

	// paused holds the partitions paused because too many of their keyed
	// requests wait (pause), with the assignment they were paused
	// in. Only the poll goroutine uses it.
	paused map[int32]*partState
	// assigned counts the partitions the lane holds; standbySince is when
	// a rebalance left it none (zero while it holds some), and warned
	// whether that was logged. Only the poll goroutine uses them.
	assigned     int
	standbySince time.Time
	warned       bool

	// expiredLog sums up the expired requests dropped (expired).
	expiredLog everyLog
}

// standbyWarnAfter is how long an instance holds no request partition
// before it warns that it stands by: while a group forms, members get
// empty assignments for a moment.
const standbyWarnAfter = 10 * time.Second

// checkStandby warns, once per spell, when the lane has held no partition
// for standbyWarnAfter.
func (l *lane) checkStandby() {
	if l.standbySince.IsZero() || l.warned || time.Since(l.standbySince) < standbyWarnAfter {
		return
	}
	l.warned = true
	l.s.cfg.logger.Warn("kafkatransport instance holds no partition of its request topic and stands by: its group has more members than the topic has partitions",
		"topic", l.topic, "for", time.Since(l.standbySince).Round(time.Second))
}

// newLane subscribes a consumer to topic, the request topic of svc.
func (s *Server) newLane(svc *service, topic string) (*lane, error) {
	c, err := kafka.NewConsumer(s.cfg.consumerConfig(topic, nil))
	if err != nil {
		return nil, fmt.Errorf("kafkatransport: new consumer for %q: %w", topic, err)
	}
	l := &lane{s: s, svc: svc, topic: topic, consumer: c, tracker: newTracker(topic, c), keys: newKeyQueues(s.stopping), replyTopics: s.cfg.allowedReplyTopics(), paused: map[int32]*partState{}}
	if err := c.SubscribeTopics([]string{topic}, l.rebalance); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("kafkatransport: subscribe %q: %w", topic, err)
	}
	return l, nil
}

// rebalance runs on the poll goroutine. Before partitions go to another
// instance it waits (boundedly) for their in-flight calls and commits, so
// that a rebalance redelivers as little as possible.
func (l *lane) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	log := l.s.cfg.logger
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		if c.GetRebalanceProtocol() == "COOPERATIVE" {
			l.assigned += len(e.Partitions)
		} else {
			l.assigned = len(e.Partitions) // eager: the whole assignment
		}
		l.s.cfg.metrics.PartitionsAssigned(l.topic, l.assigned)
		switch {
		case l.assigned > 0:
			l.standbySince, l.warned = time.Time{}, false
		case l.standbySince.IsZero():
			l.standbySince = time.Now() // checkStandby warns if it lasts
		}
		log.Info("kafkatransport partitions assigned", "topic", l.topic, "partitions", partitionList(e.Partitions))
	case kafka.RevokedPartitions:
		if !c.AssignmentLost() {
			// From now on no request waiting for its key starts: each is
			// abandoned when the one before it ends, so waitIdle waits
			// for the running requests only.
			l.tracker.revoke(e.Partitions)
			// A stopping server has drained already.
			if !l.s.isStopping() && !l.tracker.waitIdle(e.Partitions, min(l.s.cfg.drainTimeout, 10*time.Second)) {
				log.Warn("kafkatransport revoking partitions with calls in flight", "topic", l.topic)
			}
			l.tracker.flush()
			if _, err := c.Commit(); err != nil && !isNoOffset(err) {
				log.Warn("kafkatransport commit on revoke", "topic", l.topic, "err", err)
			}
		}
		l.tracker.forget(e.Partitions)
		l.resumeRevoked(e.Partitions)
		l.assigned = max(0, l.assigned-len(e.Partitions))
		l.s.cfg.metrics.PartitionsAssigned(l.topic, l.assigned)
		log.Info("kafkatransport partitions revoked", "topic", l.topic, "partitions", partitionList(e.Partitions), "lost", c.AssignmentLost())
	}
	return nil
}

func partitionList(ps []kafka.TopicPartition) []int32 {
	out := make([]int32, len(ps))
	for i, p := range ps {
		out[i] = p.Partition
	}
	return out
}

// poll fetches requests and dispatches them until the run stops.
func (l *lane) poll() error {
	handle := func(ev kafka.Event) (bool, error) {
		switch e := ev.(type) {
		case *kafka.Message:
			return l.dispatch(e), nil
		case *kafka.Stats:
			l.s.cfg.metrics.KafkaStatistics(l.topic, e.String())
		case kafka.Error:
			if e.IsFatal() {
				return false, fmt.Errorf("kafkatransport: consumer of %q: %w", l.topic, e)
			}
			l.s.cfg.logger.Warn("kafkatransport consumer", "topic", l.topic, "err", e)
		}
		return false, nil
	}
	lastFlush := time.Now()
	for !l.s.isStopping() {
		if time.Since(lastFlush) >= 20*time.Millisecond {
			l.tracker.flush()
			lastFlush = time.Now()
		}
		if len(l.paused) > 0 {
			l.resumeDrained()
		}
		l.checkStandby()
		if err := pollBurst(l.consumer, l.s.isStopping, handle); err != nil {
			return err
		}
	}
	return nil
}

// dispatch validates a request record and starts its handler, and reports
// whether it started or woke a goroutine (a worker). Records that cannot be answered (no
// decodable envelope, no correlation id or reply address, a deadline before
// 2001, a reply topic the server does not reply to or a reply partition
// that topic does not have) are dead-lettered;
// those whose deadline has passed are finished without running anything.
func (l *lane) dispatch(m *kafka.Message) bool {
	req := &request{lane: l, msg: m}
	l.tracker.start(&req.ticket, m.TopicPartition.Partition, int64(m.TopicPartition.Offset))
	l.s.add(1)
	if err := req.decode(); err != nil {
		l.s.cfg.logger.Warn("kafkatransport dead-lettering a request that cannot be answered", "topic", l.topic,
			"partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset), "err", err)
		return l.deadLetter(req, err)
	}
	var ok bool
	req.method, ok = l.svc.methods[string(req.env.method)]
	if !ok {
		req.method.name = string(req.env.method)
	}
	req.stream.method = req.method.name
	if req.replyTopic, ok = l.replyTopics[string(req.env.replyTopic)]; !ok {
		err := fmt.Errorf("reply topic %q is not one this server replies to", req.env.replyTopic)
		l.s.cfg.logger.Warn("kafkatransport dead-lettering a request", "topic", l.topic, "method", req.method.name, "err", err)
		return l.deadLetter(req, err)
	}
	if err := l.s.replies.check(req.replyTopic, req.env.replyPartition); err != nil {
		l.s.cfg.logger.Warn("kafkatransport dead-lettering a request", "topic", l.topic, "method", req.method.name, "err", err)
		return l.deadLetter(req, err)
	}
	if l.expired(req) {
		l.done(req)
		return false
	}
	if g := l.s.cfg.guard; g != nil {
		if req.caller, req.refused = g.OpenRequest(req.method.name, m); req.refused != nil && status.Code(req.refused) != codes.PermissionDenied {
			l.s.cfg.logger.Warn("kafkatransport dead-lettering a request that is not authentic", "topic", l.topic, "method", req.method.name,
				"partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset), "err", req.refused)
			return l.deadLetter(req, req.refused)
		}
	}
	if req.env.stream != nil { // opens a stream: not ordered by key, no slot
		l.openStream(req)
		return false
	}
	keyed := len(m.Key) > 0
	if keyed {
		switch res, waiting := l.keys.enqueue(req); res {
		case queued:
			// The goroutine serving its key's requests will run it.
			if waiting >= l.maxWaiting() {
				l.pause(req)
			}
			return false
		case refused:
			l.abandon(req)
			return false
		}
	}
	waited, ok := l.acquire()
	if !ok {
		// Left unfinished, so its offset is not committed and another
		// instance will serve it. Nothing waits behind a keyed req yet:
		// only this goroutine queues requests.
		if keyed {
			l.keys.dropFrom(req, l.abandon)
		} else {
			l.abandon(req)
		}
		return false
	}
	if waited && l.expired(req) { // its deadline passed while the slot was awaited
		l.done(req)
		if keyed {
			l.keys.next(req) // forgets the key: nothing waits behind req
		}
		<-l.s.sem
		return false
	}
	l.s.workers.handle(req)
	return true
}

// decode decodes the envelope of req, and returns why req cannot be
// answered: no or an undecodable envelope, no correlation id or no reply
// address.
func (req *request) decode() error {
	raw, ok := header(req.msg.Headers, hdrRPC)
	if !ok {
		return errors.New("no rpc header")
	}
	if err := req.env.decode(raw); err != nil {
		return fmt.Errorf("undecodable rpc envelope: %w", err)
	}
	switch ms := req.env.deadlineUnixMs; {
	case len(req.env.id) == 0:
		return errors.New("rpc envelope without a correlation id")
	case len(req.env.replyTopic) == 0 || req.env.replyPartition < 0:
		return errors.New("rpc envelope without a reply address")
	case ms != 0 && ms < minDeadlineUnixMs:
		return fmt.Errorf("deadline_unix_ms %d is before 2001-09-09: milliseconds since the Unix epoch expected (seconds given?)", ms)
	}
	return nil
}

// minDeadlineUnixMs is the earliest deadline a request may carry, 10^12 ms
// (2001-09-09): an earlier one is a mistake of unit (seconds, which are
// about 1.8*10^9 now, read as milliseconds fall in January 1970) rather
// than a request that waited too long, so it is dead-lettered, not
// dropped as expired.
const minDeadlineUnixMs = 1_000_000_000_000

// deadLetter copies req, which cannot be answered because of cause, to the
// dead-letter topic of the lane's consumer group, and finishes it. It takes
// a concurrency slot, as a handler does, and reports whether it started
// the goroutine that produces the dead letter; when the server stops
// first, req is abandoned.
func (l *lane) deadLetter(req *request, cause error) bool {
	if _, ok := l.acquire(); !ok {
		l.abandon(req)
		return false
	}
	go func() {
		defer func() { <-l.s.sem }()
		dl := deadLetter{topic: l.topic + ".dlq", msg: req.msg, cause: cause, attempts: 1, group: l.topic}
		if l.s.dl.send(l.s.base, dl) {
			l.done(req)
		} else {
			l.abandon(req)
		}
	}()
	return true
}

// acquire takes a concurrency slot for a request to start, waiting while
// none is free: at the concurrency limit the server stops fetching. It
// reports whether it had to wait, and false once the run is stopping:
// nothing more starts then, even where a slot is free.
func (l *lane) acquire() (waited, ok bool) {
	if l.s.isStopping() {
		return false, false
	}
	select {
	case l.s.sem <- struct{}{}:
		return false, true
	default:
	}
	select {
	case l.s.sem <- struct{}{}:
		return true, true
	case <-l.s.stopping:
		return true, false
	}
}

// expired reports, and logs, that req's deadline has passed: its caller
// has given up, so it is not run. Each is counted (Metrics.RequestExpired)
// and logged at debug level; an info line sums them up at most every
// expiredLogEvery, so a backlog that expires shows without flooding the
// log.
func (l *lane) expired(req *request) bool {
	ms := req.env.deadlineUnixMs
	if ms <= 0 || time.Now().Before(time.UnixMilli(ms)) {
		return false
	}
	l.s.cfg.logger.Debug("kafkatransport dropping expired request", "method", req.method.name, "id", string(req.env.id))
	l.s.cfg.metrics.RequestExpired(l.svc.desc.ServiceName)
	if n, ok := l.expiredLog.note(); ok {
		l.s.cfg.logger.Info("kafkatransport dropped expired requests unrun: their callers gave up", "topic", l.topic, "count", n,
			"last_method", req.method.name, "last_late_by", time.Since(time.UnixMilli(ms)).Round(time.Millisecond))
	}
	return true
}

// expiredLogEvery is how often, at most, a lane logs the expired requests
// it dropped.
const expiredLogEvery = 10 * time.Second

// everyLog counts events and says when to log their sum: at the first, then
// at most every expiredLogEvery. Safe for concurrent use.
type everyLog struct {
	mu     sync.Mutex
	count  int
	logged time.Time
}

// note counts one event and returns the events since the last log and
// whether to log them now.
func (e *everyLog) note() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.count++
	if time.Since(e.logged) < expiredLogEvery {
		return 0, false
	}
	n := e.count
	e.count, e.logged = 0, time.Now()
	return n, true
}

// abandon gives up a request, which holds no concurrency slot, without
// running it. Left unfinished, its offset is not committed and the
// partition's next owner serves it.
func (l *lane) abandon(req *request) {
	l.tracker.abandon(&req.ticket)
	l.s.add(-1)
}

// done finishes a request that produced no reply.
func (l *lane) done(req *request) {
	l.tracker.finish(&req.ticket)
	l.s.add(-1)
}
