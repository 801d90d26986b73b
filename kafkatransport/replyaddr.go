package kafkatransport

import (
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// replyMetadataEvery is how often, at most, a server asks the brokers for
// the partitions of a reply topic when a request names a partition it does
// not know of (a topic that grew, or one first seen).
const replyMetadataEvery = 5 * time.Second

// replyMetadataTimeout bounds that request; the poll loop waits for it.
const replyMetadataTimeout = 2 * time.Second

// metadataSource is what replyAddresses asks: a producer or admin client.
type metadataSource interface {
	GetMetadata(topic *string, allTopics bool, timeoutMs int) (*kafka.Metadata, error)
}

// replyAddresses checks the reply partition of a request before its
// handler runs: a partition its reply topic does not have can never carry
// the reply, so the request is dead-lettered rather than run with its
// effects and left unanswered. It knows each reply topic's partition count
// from metadata, asked again (at most every replyMetadataEvery) when a
// request names a partition beyond it. What it cannot learn (a topic the
// brokers do not know, a metadata request that fails) lets the request
// run, as before the check: a missing topic may be one a client has just
// created, and a failed lookup says nothing. The poll loops of a server's
// lanes share it; the lookup itself holds no lock.
type replyAddresses struct {
	md metadataSource

	mu     sync.RWMutex
	counts map[string]int32     // partitions of each reply topic, when known
	asked  map[string]time.Time // when its metadata was last asked
}

func newReplyAddresses(md metadataSource) *replyAddresses {
	return &replyAddresses{md: md, counts: map[string]int32{}, asked: map[string]time.Time{}}
}

// due reports whether topic's metadata may be asked now, and if so notes
// that it is.
func (r *replyAddresses) due(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.asked[topic]) < replyMetadataEvery {
		return false
	}
	r.asked[topic] = time.Now()
	return true
}

// check returns why partition of topic cannot carry a reply, or nil.
func (r *replyAddresses) check(topic string, partition int32) error {
	r.mu.RLock()
	n, known := r.counts[topic]
	r.mu.RUnlock()
	if known && partition < n {
		return nil
	}
	if r.due(topic) {
		count, err := partitionCount(r.md, topic, int(replyMetadataTimeout/time.Millisecond))
		if err != nil {
			return nil // unknown: let it run (see the type's doc)
		}
		n, known = int32(count), true
		r.mu.Lock()
		r.counts[topic] = n
		r.mu.Unlock()
	}
	// Partition counts only grow: a count asked less than
	// replyMetadataEvery ago stands.
	if known && partition >= n {
		return fmt.Errorf("reply partition %d out of range: reply topic %q has %d partitions", partition, topic, n)
	}
	return nil
}
