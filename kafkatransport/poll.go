package kafkatransport

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// maxPollBurst bounds how many records pollBurst takes without blocking.
const maxPollBurst = 64

// pollBurst waits up to 100ms for an event of c, then takes every event
// already fetched (up to maxPollBurst, and none more once stop, if not nil,
// reports true), passing each to handle. handle reports whether it woke or
// started a goroutine; if any did, pollBurst yields the processor before
// returning, so that they run now rather than queued behind the next Poll,
// which blocks this goroutine in cgo (about 100µs a call otherwise). Started
// together, they produce together, and librdkafka sends what they produce in
// one request. A handle error ends the burst and is returned.
func pollBurst(c *kafka.Consumer, stop func() bool, handle func(kafka.Event) (bool, error)) error {
	woke := false
	for n, ev := 1, c.Poll(100); ev != nil; n++ {
		w, err := handle(ev)
		woke = woke || w
		if err != nil {
			return err
		}
		if n == maxPollBurst || (stop != nil && stop()) {
			break
		}
		ev = c.Poll(0)
	}
	if woke {
		runtime.Gosched()
	}
	return nil
}

func isNoOffset(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Code() == kafka.ErrNoOffset
}

// consumerCloseTimeout bounds how long a stopping server or subscriber waits
// for its consumers to close.
const consumerCloseTimeout = 30 * time.Second

// closeConsumers closes cs together and waits for them for at most
// consumerCloseTimeout. librdkafka's close leaves the consumer group, and a
// member that leaves while its group rebalances can wait on the group for as
// long as a broker request may take (socket.timeout.ms, a minute by
// default); a stopping process must not hang on that. A close that outlasts
// the bound is logged and left to finish in the background. name gives each
// consumer's name for the log.
func closeConsumers(logger *slog.Logger, cs []*kafka.Consumer, name func(i int) string) {
	var wg sync.WaitGroup
	done := make([]atomic.Bool, len(cs))
	for i, c := range cs {
		wg.Go(func() {
			if err := c.Close(); err != nil {
				logger.Warn("kafkatransport close consumer", "consumer", name(i), "err", err)
			}
			done[i].Store(true)
		})
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(consumerCloseTimeout):
		for i := range cs {
			if !done[i].Load() {
				logger.Error("kafkatransport consumer did not close in time; leaving it to close in the background", "consumer", name(i), "after", consumerCloseTimeout)
			}
		}
	}
}
