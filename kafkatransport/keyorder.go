package kafkatransport

import "sync"

// keyQueues orders the requests of one request topic that share a record
// key within a partition, as the key-ordered mode of Confluent's Parallel
// Consumer does: a keyed request runs only after the request of its key
// before it has finished (its handler returned and its reply was handed to
// the producer). Requests of other keys, and keyless requests, run
// concurrently, also within a partition.
//
// A waiting request is linked behind its predecessor (request.next), so
// queueing allocates nothing but the key's string for a key with no
// request in flight. A waiting request holds its concurrency slot like a
// running one, so the max-concurrency bound covers both and a full server
// stops fetching: no queue grows without bound. Keyless requests never take
// the lock.
type keyQueues struct {
	stopping <-chan struct{} // closed when Serve begins to stop

	mu    sync.Mutex
	tails map[int32]map[string]*request // partition -> key -> last request of the key
}

func newKeyQueues(stopping <-chan struct{}) *keyQueues {
	return &keyQueues{stopping: stopping, tails: map[int32]map[string]*request{}}
}

// enqueueResult says what dispatch does with a keyed request.
type enqueueResult int

const (
	runNow  enqueueResult = iota // no request of its key in flight: start it
	queued                       // behind an earlier request of its key
	refused                      // the server is stopping: start nothing
)

// enqueue adds req, a keyed request, behind the last request of its key in
// its partition.
func (k *keyQueues) enqueue(req *request) enqueueResult {
	p := req.msg.TopicPartition.Partition
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.stopping: // checked under the lock: dropFrom cannot miss req
		return refused
	default:
	}
	byKey := k.tails[p]
	if byKey == nil {
		byKey = map[string]*request{}
		k.tails[p] = byKey
	}
	if tail, ok := byKey[string(req.msg.Key)]; ok {
		req.key = tail.key
		tail.next = req
		byKey[req.key] = req
		return queued
	}
	req.key = string(req.msg.Key)
	byKey[req.key] = req
	return runNow
}

// next returns the request waiting behind req, which has finished, or nil
// when none does; the key is then forgotten.
func (k *keyQueues) next(req *request) *request {
	k.mu.Lock()
	defer k.mu.Unlock()
	if req.next == nil {
		delete(k.tails[req.msg.TopicPartition.Partition], req.key)
		return nil
	}
	return req.next
}

// dropFrom removes req and every request waiting behind it, calling drop
// for each in order. They are not run: left unfinished, their offsets are
// not committed and the partition's next owner serves them.
func (k *keyQueues) dropFrom(req *request, drop func(*request)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.tails[req.msg.TopicPartition.Partition], req.key)
	for r := req; r != nil; r = r.next {
		drop(r)
	}
}
