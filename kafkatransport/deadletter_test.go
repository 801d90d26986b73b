package kafkatransport

import (
	"errors"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A stub keeps a small key and small headers, and replaces large ones with
// their size; the whole copy keeps everything.
func TestDeadLetterRecord(t *testing.T) {
	topic := "events"
	small := []kafka.Header{{Key: "ev-type", Value: []byte("x.v1.E")}}
	large := []kafka.Header{{Key: "blob", Value: make([]byte, maxStubHeaders)}}
	for _, tc := range []struct {
		name    string
		stub    bool
		key     []byte
		headers []kafka.Header
		want    map[string]string // headers that must be there; "" for absent
		wantKey bool
		wantVal bool
	}{
		{"whole", false, []byte("k"), small, map[string]string{"ev-type": "x.v1.E", "dlq-stub": "", "dlq-size": ""}, true, true},
		{"stub of small key and headers", true, []byte("k"), small,
			map[string]string{"ev-type": "x.v1.E", "dlq-stub": "true", "dlq-size": "5", "dlq-key-size": "", "dlq-headers-size": ""}, true, false},
		{"stub of a large key", true, make([]byte, maxStubKey+1), small,
			map[string]string{"ev-type": "x.v1.E", "dlq-key-size": "4097", "dlq-stub": "true"}, false, false},
		{"stub of large headers", true, []byte("k"), large,
			map[string]string{"blob": "", "dlq-headers-size": "65540", "dlq-stub": "true"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dl := deadLetter{topic: "g.dlq", group: "g", attempts: 2, cause: errors.New(strings.Repeat("e", maxDLQError+10)),
				msg: &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 4, Offset: 42}, Key: tc.key, Value: []byte("value"), Headers: tc.headers}}
			m := dl.record(tc.stub)
			got := map[string]string{}
			for _, h := range m.Headers {
				got[h.Key] = string(h.Value)
			}
			want := map[string]string{"dlq-topic": "events", "dlq-partition": "4", "dlq-offset": "42", "dlq-group": "g", "dlq-attempts": "2", "dlq-error": strings.Repeat("e", maxDLQError)}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("header %s = %.40q, want %.40q", k, got[k], v)
				}
			}
			if *m.TopicPartition.Topic != "g.dlq" || (m.Key != nil) != tc.wantKey || (m.Value != nil) != tc.wantVal {
				t.Errorf("record to %s, key %d bytes, value %q; want g.dlq, key %v, value %v", *m.TopicPartition.Topic, len(m.Key), m.Value, tc.wantKey, tc.wantVal)
			}
		})
	}
}
