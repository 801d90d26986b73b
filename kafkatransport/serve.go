package kafkatransport

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Serve creates missing request topics, consumes requests and answers them
// until ctx ends. It then stops fetching, lets in-flight handlers finish and
// their replies be produced (for at most the drain timeout, after which their
// contexts are cancelled), commits, leaves the consumer groups and returns.
// It returns nil after such a graceful stop.
func (s *Server) Serve(ctx context.Context) error {
	names, err := startOnce(&s.mu, &s.started, s.services, "Serve", "service registered")
	if err != nil {
		return err
	}
	s.handler = chainServer(s.cfg.serverInterceptors)
	defer s.cfg.forwardLogs()() // stops last, after every client closed

	producer, err := kafka.NewProducer(s.cfg.producerConfig(producerDefaults))
	if err != nil {
		return fmt.Errorf("kafkatransport: new producer: %w", err)
	}
	defer producer.Close()
	admin, err := kafka.NewAdminClientFromProducer(producer)
	if err != nil {
		return fmt.Errorf("kafkatransport: new admin client: %w", err)
	}
	defer admin.Close()

	// Handlers outlive ctx during the drain; hardStop cancels them after it.
	base, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	s.producer, s.base = producer, base
	s.sem = make(chan struct{}, s.cfg.maxConcurrency)
	s.workers = newWorkers()
	defer s.workers.close()
	s.stopping = make(chan struct{})
	s.dl = newDeadLetterer(producer, &s.cfg, &s.health)
	s.replies = newReplyAddresses(producer)
	topics := newTopicEnsurer(admin, &s.cfg)
	for _, n := range names {
		spec, ok := s.specs[n]
		if !ok {
			spec = ServiceSpec{Name: n}
		}
		topic := s.cfg.topic(spec.topic())
		err := topics.ensureCalls(ctx, s.cfg.partitions, topic)
		if err == nil {
			err = topics.ensure(ctx, s.cfg.partitions, topic+".dlq")
		}
		if err != nil {
			s.closeLanes()
			return fmt.Errorf("kafkatransport: %w", err)
		}
		l, err := s.newLane(s.services[n], topic)
		if err != nil {
			s.closeLanes()
			return err
		}
		s.lanes = append(s.lanes, l)
		s.health.watch(l.tracker)
	}

	var deliveries, polls sync.WaitGroup
	if s.hasStreams() {
		if err := s.startStreams(ctx, admin, &polls); err != nil {
			s.closeLanes()
			return err
		}
	}
	deliveries.Go(func() { readDeliveries(s.producer, &s.cfg, s.delivered) })
	errc := make(chan error, len(s.lanes))
	for _, l := range s.lanes {
		polls.Go(func() { errc <- l.poll() })
	}
	close(s.ready)
	s.cfg.logger.Info("kafkatransport server serving", "services", names, "instance", s.cfg.instanceID)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.health.failed(runErr)
	}
	close(s.stopping)
	polls.Wait() // no more dispatches, so waiting for s.count to drop is sound
	drainEnd := time.Now().Add(s.cfg.drainTimeout)
	s.stopStreams(drainEnd)
	s.cfg.logger.Info("kafkatransport server draining", "in_flight", s.count.Load())
	if !s.waitDrained(time.Until(drainEnd)) {
		s.cfg.logger.Warn("kafkatransport drain timeout: cancelling handlers")
		hardStop()
		s.waitDrained(5 * time.Second)
	}
	producer.Flush(int(s.cfg.drainTimeout / time.Millisecond))
	s.closeLanes()
	admin.Close()
	s.dl.close()
	s.produceMu.Lock()
	s.closed = true  // a handler that outlived the drain cannot reply now
	producer.Close() // ends readDeliveries
	s.produceMu.Unlock()
	deliveries.Wait()
	s.cfg.logger.Info("kafkatransport server stopped")
	return runErr
}

// Health returns nil while the server makes progress, else why not: a
// partition of a request topic whose oldest unfinished request has been so
// for longer than the stall timeout (WithStallTimeout), a dead letter that
// could not be produced (until one is), or the fatal consumer error that
// ended Serve. It is nil before Serve. Programs serve it on their readiness
// endpoint.
func (s *Server) Health() error { return s.health.err() }

// waitDrained waits, for at most d, until no request is in flight, and
// reports whether none is. It polls rather than waiting on a WaitGroup in a
// goroutine, which a handler that ignores cancellation would leak.
func (s *Server) waitDrained(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for s.count.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// isStopping reports whether Serve has begun to stop.
func (s *Server) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// add counts n more (or fewer) requests in flight.
func (s *Server) add(n int) {
	s.count.Add(int64(n))
}

// closeLanes stores the finished requests' offsets and closes the lanes'
// consumers, which commits them and leaves the consumer groups.
func (s *Server) closeLanes() {
	cs := make([]*kafka.Consumer, len(s.lanes))
	for i, l := range s.lanes {
		l.tracker.close()
		cs[i] = l.consumer
	}
	closeConsumers(s.cfg.logger, cs, func(i int) string { return s.lanes[i].topic })
}

// delivered finishes the request whose reply the broker acknowledged, or
// refused.
func (s *Server) delivered(m *kafka.Message) {
	if st, ok := m.Opaque.(*srvStream); ok {
		if err := m.TopicPartition.Error; err != nil {
			s.cfg.logger.Warn("kafkatransport stream frame not delivered; ending the stream", "method", st.method, "id", st.id, "err", err)
			if st.cancel != nil {
				st.cancel(errClientGone)
			}
		}
		return
	}
	req, ok := m.Opaque.(*request)
	if !ok {
		return
	}
	if err := m.TopicPartition.Error; err != nil {
		// The client has timed out by now; serving again would not help.
		s.cfg.logger.Error("kafkatransport reply not delivered", "method", req.method.name, "id", string(req.env.id), "err", err)
	}
	req.lane.done(req)
}
