package kafkatransport

// The server side of streams that is not one stream's: the table of the
// streams a server holds, its inbox (a partition of the reply topic where
// clients' frames arrive) and its heartbeat loop. stream_server.go holds
// the opening of a stream and the grpc.ServerStream of its handler.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// streams is a server's table of the streams it holds and the inbox where
// their clients' frames arrive.
type streams struct {
	inbox          *kafka.Consumer
	inboxTopic     string
	inboxPartition int32
	run            []byte // names this server instance in its frames

	mu      sync.Mutex
	byID    map[string]*srvStream
	running atomic.Int64 // stream handlers running
}

// hasStreams reports whether a registered service has streaming methods.
func (s *Server) hasStreams() bool {
	for _, svc := range s.services {
		if len(svc.streams) > 0 {
			return true
		}
	}
	return false
}

// startStreams opens the server's stream inbox, a partition of the reply
// topic, and starts reading it and the heartbeat loop.
func (s *Server) startStreams(ctx context.Context, admin *kafka.AdminClient, wg *sync.WaitGroup) error {
	topic := s.cfg.topic(s.cfg.replyTopic)
	c, p, err := openInbox(ctx, admin, &s.cfg, topic, -1, "kgrpc-inbox-")
	if err != nil {
		return err
	}
	s.streams = &streams{inbox: c, inboxTopic: topic, inboxPartition: p, byID: map[string]*srvStream{}, run: []byte(s.cfg.instanceID + "-" + runID())}
	wg.Go(func() {
		for !s.isStopping() {
			_ = pollBurst(c, s.isStopping, s.handleInbox)
		}
	})
	wg.Go(func() {
		hb := s.cfg.streamHeartbeat
		t := time.NewTicker(hb / 2)
		defer t.Stop()
		for {
			select {
			case <-s.stopping:
				return
			case now := <-t.C:
				s.checkStreams(now, hb)
			}
		}
	})
	s.cfg.logger.Info("kafkatransport stream inbox ready", "topic", topic, "partition", p)
	return nil
}

// stopStreams ends every stream (their handlers' contexts are cancelled
// and their clients get Unavailable), waits until deadline at most for the
// handlers to return, then closes the inbox.
func (s *Server) stopStreams(deadline time.Time) {
	if s.streams == nil {
		return
	}
	ss := s.streams
	ss.mu.Lock()
	for _, st := range ss.byID {
		st.cancel(errServerStopping)
	}
	ss.mu.Unlock()
	// Polled, not waited for in a goroutine, which a handler that ignores
	// its context would leak.
	for ss.running.Load() > 0 {
		if time.Now().After(deadline) {
			s.cfg.logger.Warn("kafkatransport stream handlers still running after the drain timeout", "running", ss.running.Load())
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	closeConsumers(s.cfg.logger, []*kafka.Consumer{ss.inbox}, func(int) string { return "stream inbox" })
}

// handleInbox hands a frame of the inbox to its stream; it runs on the
// inbox's poll goroutine. Frames of streams this server does not hold (the
// partition is shared) are ignored, as are those that are not authentic or
// come from another unit than the one that opened the stream.
func (s *Server) handleInbox(ev kafka.Event) (bool, error) {
	e, ok := ev.(*kafka.Message)
	if !ok {
		return false, nil
	}
	raw, ok := header(e.Headers, hdrStream)
	if !ok {
		return false, nil
	}
	var f streamFrame
	if err := f.decode(raw); err != nil {
		s.cfg.logger.Warn("kafkatransport undecodable stream frame", "partition", e.TopicPartition.Partition, "offset", int64(e.TopicPartition.Offset), "err", err)
		return false, nil
	}
	if !f.fromClient { // a frame to a client reading this partition
		return false, nil
	}
	s.streams.mu.Lock()
	st := s.streams.byID[string(f.id)]
	s.streams.mu.Unlock()
	if st == nil {
		return false, nil
	}
	if g := s.cfg.guard; g != nil {
		caller, err := g.OpenRequest(st.method, e)
		if err == nil && caller != st.caller {
			err = fmt.Errorf("frame from unit %q of a stream opened by %q", caller, st.caller)
		}
		if err != nil {
			s.cfg.logger.Warn("kafkatransport ignoring a stream frame that is not authentic", "method", st.method, "err", err)
			return false, nil
		}
	}
	switch f.kind {
	case frameCredit:
		st.flow.credit(f.credit, f.creditBytes)
	case framePing:
		st.flow.heard()
	case frameCancel:
		st.flow.heard()
		st.cancel(errClientGone)
	case frameMessage, frameHalfClose:
		st.flow.receive(f.seq, inFrame{kind: f.kind, value: e.Value})
	default:
		return false, nil
	}
	return true, nil
}

// checkStreams pings the clients of idle streams and cancels the streams
// whose client has been silent too long.
func (s *Server) checkStreams(now time.Time, hb time.Duration) {
	s.streams.mu.Lock()
	list := make([]*srvStream, 0, len(s.streams.byID))
	for _, st := range s.streams.byID {
		list = append(list, st)
	}
	s.streams.mu.Unlock()
	for _, st := range list {
		ping, dead := st.flow.idle(now, hb)
		if dead {
			s.cfg.logger.Info("kafkatransport stream client went silent; cancelling", "method", st.method, "id", st.id)
			st.cancel(errClientGone)
			continue
		}
		if ping {
			_ = st.send(&streamFrame{kind: framePing}, nil)
		}
	}
}
