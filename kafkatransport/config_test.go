package kafkatransport

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Two settings hold whatever WithKafkaConfig says: consumers store offsets
// only once a record is handled (librdkafka storing each polled offset
// would commit requests still waiting or running, lost in a crash), and no
// producer lets the broker create a topic (each role creates its own).
func TestFixedSettings(t *testing.T) {
	override := WithKafkaConfig(kafka.ConfigMap{"enable.auto.offset.store": true, "allow.auto.create.topics": true})
	c, err := newConfig("b:9092", []ServerOption{override}, ServerOption.applyServer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		cfg       *kafka.ConfigMap
	}{
		{"consumer", "enable.auto.offset.store", c.consumerConfig("g", nil)},
		{"producer", "allow.auto.create.topics", c.producerConfig(producerDefaults)},
		{"publisher", "allow.auto.create.topics", c.producerConfig(publisherDefaults)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.cfg.Get(tc.key, nil); err != nil || got != false {
				t.Fatalf("%s = %v, %v; want false", tc.key, got, err)
			}
		})
	}
}
