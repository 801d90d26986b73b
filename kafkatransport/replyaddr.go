package kafkatransport

import (
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// replyMetadataEvery is how often, at most, a server asks the brokers for
// the partitions of a reply topic when a request names a partition it does
// not know (a topic that grew, or one created after the server started).
const replyMetadataEvery = 5 * time.Second

// replyMetadataTimeout bounds that request; the poll loop waits for it.
const replyMetadataTimeout = 2 * time.Second

// metadataSource is what replyAddresses asks: a producer or admin client.
type metadataSource interface {
	GetMetadata(topic *string, allTopics bool, timeoutMs int) (*kafka.Metadata, error)
}

// replyAddresses checks the reply address of a request before its handler
// runs: a partition the reply topic does not have, or a reply topic that
// does not exist, can never carry the reply, so the request is dead-lettered
// rather than run with its effects and left unanswered. It knows each
// reply topic's partition count from metadata, asked again (at most every
// replyMetadataEvery) when a request names a partition beyond it. The poll
// loops of a server's lanes share it; one waits for another's metadata
// request, which is rare.
type replyAddresses struct {
	md metadataSource

	mu     sync.Mutex
	counts map[string]int32     // partitions of each reply topic, when it exists
	asked  map[string]time.Time // when its metadata was last asked
}

func newReplyAddresses(md metadataSource) *replyAddresses {
	return &replyAddresses{md: md, counts: map[string]int32{}, asked: map[string]time.Time{}}
}

// check returns why partition of topic cannot carry a reply, or nil.
func (r *replyAddresses) check(topic string, partition int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, known := r.counts[topic]
	if known && partition < n {
		return nil
	}
	if time.Since(r.asked[topic]) >= replyMetadataEvery {
		r.asked[topic] = time.Now()
		count, err := partitionCount(r.md, topic, int(replyMetadataTimeout/time.Millisecond))
		if err == nil {
			n, known = int32(count), true
			r.counts[topic] = n
		} else if !known {
			return fmt.Errorf("reply topic %q does not exist or has no metadata: %w", topic, err)
		}
	}
	switch {
	case !known:
		return fmt.Errorf("reply topic %q does not exist", topic)
	case partition >= n:
		return fmt.Errorf("reply partition %d out of range: reply topic %q has %d partitions", partition, topic, n)
	}
	return nil
}
