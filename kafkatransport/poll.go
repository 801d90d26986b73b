package kafkatransport

import (
	"errors"
	"runtime"

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
