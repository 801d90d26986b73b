package kafkatransport

import (
	"fmt"
	"slices"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Guard authenticates the records a unit produces and checks the records it
// consumes, so that a unit acts only on records produced by a unit allowed
// to produce them ("Record authentication" in the package documentation).
// WithGuard installs one on every role; package kafkatransport/trust has
// the implementation with per-unit asymmetric keys.
//
// The Seal methods change the record about to be produced (its value, its
// headers) and the Open methods change the record consumed back, so that
// the transport reads the record as it was before sealing. Topic, key and
// every header the transport set before sealing are what a Guard must
// bind; the transport does not change a record after Seal. Methods are
// called concurrently.
type Guard interface {
	// SealRequest seals a request record of method ("/pkg.Service/Method")
	// for the unit that serves the method's service.
	SealRequest(method string, m *kafka.Message) error
	// SealStreamFrame seals a frame a client sends on a stream of method
	// that it opened on the request topic openTopic, for the unit that
	// holds the stream, as SealRequest seals a request to openTopic: the
	// frame goes to the server's inbox, whose topic does not name the
	// unit of a per-unit service. The server opens it with OpenRequest.
	SealStreamFrame(method, openTopic string, m *kafka.Message) error
	// OpenRequest checks and opens a request record of method and returns
	// the unit that produced it. An error with code PermissionDenied means
	// that the record is authentic but its unit may not call method: the
	// server answers it with that error. Any other error means the record
	// is not authentic: it is dead-lettered and never answered.
	OpenRequest(method string, m *kafka.Message) (caller string, err error)
	// SealReply seals the reply record of a request of method that caller
	// produced.
	SealReply(method, caller string, m *kafka.Message) error
	// OpenReply checks and opens the reply to this unit's request of
	// method. A reply that does not open is ignored: the call goes on
	// waiting for the authentic one.
	OpenReply(method string, m *kafka.Message) error
	// SealEvent seals an event record of the event type name (the
	// message's full protobuf name).
	SealEvent(name string, m *kafka.Message) error
	// OpenEvent checks and opens an event record of the event type name,
	// and returns the unit that produced it. A record that does not open
	// goes to the subscriber's dead-letter topic with the error as its
	// reason, and no handler sees it.
	OpenEvent(name string, m *kafka.Message) (producer string, err error)
}

// WithGuard authenticates every record the role produces and checks every
// record it consumes with g (see Guard); a unit without one trusts every
// record, as a transport without authentication must. All roles.
func WithGuard(g Guard) Option {
	return option(func(c *config) error {
		if g == nil {
			return invalid("WithGuard", "nil", "a Guard")
		}
		c.guard = g
		return nil
	})
}

// WithReplyTopics sets the topics a server replies to, before any topic
// prefix; a request naming another reply topic is dead-lettered without
// running, so that a request can neither direct replies into a topic of
// the requester's choosing nor make the server create one. Default: the
// default reply topic of clients ("kgrpc.replies"). Servers only.
func WithReplyTopics(topics ...string) ServerOption {
	return serverOption(func(c *config) error {
		if len(topics) == 0 || slices.Contains(topics, "") {
			return invalid("WithReplyTopics", fmt.Sprint(topics), "one or more topic names")
		}
		c.replyTopics = slices.Clone(topics)
		return nil
	})
}

// allowedReplyTopics returns the prefixed topics a server replies to, each
// mapped to itself: a request's reply topic is looked up as bytes and the
// record keeps the one string.
func (c *config) allowedReplyTopics() map[string]string {
	topics := c.replyTopics
	if len(topics) == 0 {
		topics = []string{c.replyTopic}
	}
	out := make(map[string]string, len(topics))
	for _, t := range topics {
		out[c.topic(t)] = c.topic(t)
	}
	return out
}
