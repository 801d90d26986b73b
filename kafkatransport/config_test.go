package kafkatransport

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Request and event consumers store offsets themselves whatever
// WithKafkaConfig says: with librdkafka storing each polled record's offset,
// records still waiting or running would be committed and lost in a crash.
func TestOffsetStoreStaysManual(t *testing.T) {
	for _, role := range []struct {
		name string
		cfg  func() (config, error)
	}{
		{"server", func() (config, error) {
			return newConfig("b:9092", []ServerOption{WithKafkaConfig(kafka.ConfigMap{"enable.auto.offset.store": true})}, ServerOption.applyServer)
		}},
		{"subscriber", func() (config, error) {
			return newConfig("b:9092", []SubscriberOption{WithKafkaConfig(kafka.ConfigMap{"enable.auto.offset.store": true})}, SubscriberOption.applySubscriber)
		}},
	} {
		t.Run(role.name, func(t *testing.T) {
			c, err := role.cfg()
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.consumerConfig("g", manualOffsetStore).Get("enable.auto.offset.store", nil)
			if err != nil || got != false {
				t.Fatalf("enable.auto.offset.store = %v, %v; want false", got, err)
			}
		})
	}
}
