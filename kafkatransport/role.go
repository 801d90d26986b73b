package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// forwardLogs copies librdkafka's log lines to the logger until the returned
// stop function is called, after every Kafka client of the role is closed.
// Informational lines are logged at debug level.
func (c *config) forwardLogs() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case e := <-c.logs:
				level := slog.LevelDebug
				switch {
				case e.Level <= 3:
					level = slog.LevelError
				case e.Level == 4:
					level = slog.LevelWarn
				}
				c.logger.Log(context.Background(), level, "librdkafka: "+e.Message, "client", e.Name, "tag", e.Tag)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// startOnce marks a Server or Subscriber started and returns the sorted
// names of what was registered with it (services, topics). It fails when
// called twice (call names the method) or with nothing registered.
func startOnce[V any](mu *sync.Mutex, started *bool, registered map[string]V, call, none string) ([]string, error) {
	mu.Lock()
	defer mu.Unlock()
	if *started {
		return nil, fmt.Errorf("kafkatransport: %s called twice", call)
	}
	*started = true
	if len(registered) == 0 {
		return nil, errors.New("kafkatransport: no " + none)
	}
	return slices.Sorted(maps.Keys(registered)), nil
}

// readDeliveries passes each delivery report on p's events channel to
// delivered, if not nil, until p is closed, and its statistics to the
// role's Metrics. Producer errors are logged at debug level: librdkafka's
// own log has them.
func readDeliveries(p *kafka.Producer, cfg *config, delivered func(*kafka.Message)) {
	for ev := range p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			if delivered != nil {
				delivered(e)
			}
		case *kafka.Stats:
			cfg.metrics.KafkaStatistics("", e.String())
		case kafka.Error:
			cfg.logger.Debug("kafkatransport producer", "err", e)
		}
	}
}
