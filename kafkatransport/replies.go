package kafkatransport

import (
	"errors"
	"math"
	"slices"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// readReplies hands each reply record to the call waiting for it. Replies to
// other clients sharing the partition, and late replies, are ignored.
func (c *ClientConn) readReplies() {
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		_ = pollBurst(c.consumer, nil, c.handleReply) // handleReply returns no error
	}
}

// handleReply hands a reply record to the call waiting for it and reports
// whether there was one. Its error is always nil: a bad reply is logged and
// ignored.
func (c *ClientConn) handleReply(ev kafka.Event) (bool, error) {
	switch e := ev.(type) {
	case *kafka.Message:
		raw, ok := header(e.Headers, hdrRPC)
		if !ok {
			if raw, ok := header(e.Headers, hdrStream); ok {
				return c.handleStreamFrame(e, raw), nil
			}
			return false, nil
		}
		var env replyEnvelope
		if err := env.decode(raw); err != nil {
			c.cfg.logger.Warn("kafkatransport undecodable reply envelope", "partition", e.TopicPartition.Partition, "offset", int64(e.TopicPartition.Offset), "err", err)
			return false, nil
		}
		seq, ok := c.seqOf(env.id)
		if !ok {
			return false, nil // a reply to another client reading this partition
		}
		if g := c.cfg.guard; g != nil {
			pc := c.pendingOf(seq)
			if pc == nil {
				return false, nil // a late reply
			}
			if err := g.OpenReply(pc.method, e); err != nil {
				c.cfg.logger.Warn("kafkatransport ignoring a reply that is not authentic", "method", pc.method,
					"partition", e.TopicPartition.Partition, "offset", int64(e.TopicPartition.Offset), "err", err)
				return false, nil
			}
		}
		return c.finish(seq, callResult{reply: env, value: e.Value}), nil
	case *kafka.Stats:
		c.cfg.metrics.KafkaStatistics("", e.String())
	case kafka.Error:
		c.cfg.logger.Debug("kafkatransport reply consumer", "err", e) // librdkafka's own log has it
	}
	return false, nil
}

// delivered fails the call whose request the broker did not accept, and
// records where an accepted one was stored on the call's span.
func (c *ClientConn) delivered(m *kafka.Message) {
	if cs, ok := m.Opaque.(*clientStream); ok {
		if err := m.TopicPartition.Error; err != nil {
			cs.finish(status.Errorf(codes.Unavailable, "kafkatransport: produce stream record: %v", err))
		}
		return
	}
	pc, ok := m.Opaque.(*pendingCall)
	if !ok {
		return
	}
	if err := m.TopicPartition.Error; err != nil {
		c.finish(pc.seq, callResult{err: produceError(err), unsent: notStored(err)})
		return
	}
	pc.partition.Store(m.TopicPartition.Partition)
	if pc.span != nil { // send recorded the topic
		recordLocation(pc.span, "", m.TopicPartition.Partition, int64(m.TopicPartition.Offset), "")
	}
}

// pendingOf returns the pending call of seq, or nil.
func (c *ClientConn) pendingOf(seq uint64) *pendingCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[seq]
}

// finish ends a pending call, if it is still pending, and reports whether
// it was.
func (c *ClientConn) finish(seq uint64, r callResult) bool {
	c.mu.Lock()
	pc, ok := c.pending[seq]
	if ok {
		delete(c.pending, seq)
	}
	c.mu.Unlock()
	if ok {
		r.pc = pc
		pc.ch <- r
	}
	return ok
}

// forget drops the pending call of seq, whose request was not sent,
// without ending it.
func (c *ClientConn) forget(seq uint64) {
	c.mu.Lock()
	delete(c.pending, seq)
	c.mu.Unlock()
}

// notStored reports whether a failed delivery's error says that the
// broker did not store the record: it refused it before appending it, or
// it never got it. A record that timed out in flight (ErrMsgTimedOut),
// or was stored without enough replicas, may have been stored.
func notStored(err error) bool {
	return hasCode(err, kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition, kafka.ErrQueueFull,
		kafka.ErrLeaderNotAvailable, kafka.ErrNotLeaderForPartition, kafka.ErrNotEnoughReplicas)
}

// hasCode reports whether err is a kafka.Error with one of codes.
func hasCode(err error, codes ...kafka.ErrorCode) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && slices.Contains(codes, ke.Code())
}

// seqOf returns the sequence number of one of this client's correlation
// ids (idPrefix followed by the number in base 36), or false for an id
// that is not this client's.
func (c *ClientConn) seqOf(id []byte) (uint64, bool) {
	if len(id) <= len(c.idPrefix) || string(id[:len(c.idPrefix)]) != c.idPrefix {
		return 0, false
	}
	var seq uint64
	for _, ch := range id[len(c.idPrefix):] {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'z':
			d = ch - 'a' + 10
		default:
			return 0, false
		}
		if seq > (math.MaxUint64-uint64(d))/36 {
			return 0, false
		}
		seq = seq*36 + uint64(d)
	}
	return seq, true
}
