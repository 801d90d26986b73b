package kafkatransport

import (
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// keyQueues orders the requests of one request topic that share a record
// key within a partition, as the key-ordered mode of Confluent's Parallel
// Consumer does: a keyed request runs only after the request of its key
// before it has finished (its handler returned and its reply was handed to
// the producer). Requests of other keys, and keyless requests, run
// concurrently, also within a partition.
//
// The queues live in the partition's partState, so each assignment of a
// partition has its own: requests refetched after the partition was lost
// and given back never wait behind, nor are dropped with, the requests of
// the earlier assignment. A waiting request is linked behind its
// predecessor (request.next), so queueing allocates nothing but the key's
// string for a key with no request in flight. A waiting request holds no
// concurrency slot: when the request before it ends and gives its slot
// back, it takes one in line with every other request.
// The lane bounds the waiting requests of a partition (maxWaiting). Keyless
// requests never take the lock.
type keyQueues struct {
	stopping <-chan struct{} // closed when Serve begins to stop

	mu sync.Mutex // guards partState.keys and partState.waiting
}

func newKeyQueues(stopping <-chan struct{}) *keyQueues {
	return &keyQueues{stopping: stopping}
}

// enqueueResult says what dispatch does with a keyed request.
type enqueueResult int

const (
	runNow  enqueueResult = iota // no request of its key in flight: start it
	queued                       // behind an earlier request of its key
	refused                      // the server is stopping: start nothing
)

// enqueue adds req, a keyed request whose ticket was started, behind the
// last request of its key in its partition's assignment. It returns what to
// do with req and how many requests of the partition then wait.
func (k *keyQueues) enqueue(req *request) (enqueueResult, int) {
	ps := req.ticket.ps
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.stopping: // checked under the lock: dropFrom cannot miss req
		return refused, ps.waiting
	default:
	}
	if tail, ok := ps.keys[string(req.msg.Key)]; ok {
		req.key = tail.key
		tail.next = req
		ps.keys[req.key] = req
		ps.waiting++
		return queued, ps.waiting
	}
	if ps.keys == nil {
		ps.keys = map[string]*request{}
	}
	req.key = string(req.msg.Key)
	ps.keys[req.key] = req
	return runNow, ps.waiting
}

// next returns the request waiting behind req, which has finished, and
// counts it as no longer waiting; or nil when none waits, and the key is
// then forgotten.
func (k *keyQueues) next(req *request) *request {
	ps := req.ticket.ps
	k.mu.Lock()
	defer k.mu.Unlock()
	if req.next == nil {
		delete(ps.keys, req.key)
		return nil
	}
	ps.waiting--
	return req.next
}

// dropFrom removes req, which is not waiting (next returned it, or it was
// to run now), and every request waiting behind it, calling drop for each
// in order. They are not run.
func (k *keyQueues) dropFrom(req *request, drop func(*request)) {
	ps := req.ticket.ps
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(ps.keys, req.key)
	for r := req; r != nil; r = r.next {
		if r != req {
			ps.waiting--
		}
		drop(r)
	}
}

// waiting returns how many keyed requests of ps wait behind their key.
func (k *keyQueues) waiting(ps *partState) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return ps.waiting
}

// maxWaiting bounds the keyed requests of one partition that wait behind
// their key: four times WithMaxConcurrency. Reaching it pauses the
// partition (pause).
func (l *lane) maxWaiting() int { return 4 * l.s.cfg.maxConcurrency }

// pause stops fetching the partition of req, a request just queued behind
// its key, because maxWaiting requests of the partition wait. Other
// partitions, and the requests already fetched, go on. librdkafka drops
// the records of the partition it fetched but has not delivered yet and,
// on resume, fetches again from the one after the last delivered (req), so
// nothing is skipped. Only the poll goroutine calls it.
func (l *lane) pause(req *request) {
	p := req.msg.TopicPartition.Partition
	if _, ok := l.paused[p]; ok {
		return
	}
	if err := l.consumer.Pause([]kafka.TopicPartition{{Topic: &l.topic, Partition: p}}); err != nil {
		l.s.cfg.logger.Warn("kafkatransport pause partition", "topic", l.topic, "partition", p, "err", err)
		return
	}
	l.paused[p] = req.ticket.ps
	l.s.cfg.logger.Debug("kafkatransport partition paused: too many requests wait for their key", "topic", l.topic, "partition", p)
}

// resumeDrained resumes fetching the paused partitions where at most half
// of maxWaiting requests still wait. The poll loop calls it.
func (l *lane) resumeDrained() {
	for p, ps := range l.paused {
		if l.keys.waiting(ps) <= l.maxWaiting()/2 {
			l.resume(p)
		}
	}
}

// resumeRevoked resumes the paused partitions among parts, which are being
// revoked, so that librdkafka does not keep them paused should they come
// back. The rebalance callback calls it.
func (l *lane) resumeRevoked(parts []kafka.TopicPartition) {
	for _, tp := range parts {
		if _, ok := l.paused[tp.Partition]; ok {
			l.resume(tp.Partition)
		}
	}
}

func (l *lane) resume(p int32) {
	delete(l.paused, p)
	if err := l.consumer.Resume([]kafka.TopicPartition{{Topic: &l.topic, Partition: p}}); err != nil {
		l.s.cfg.logger.Warn("kafkatransport resume partition", "topic", l.topic, "partition", p, "err", err)
	}
}
