package kafkatransport_test

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	testingv1 "github.com/kgrpc/platform/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport"
)

// The request topics a server creates, and the reply topic a client
// creates, keep their records for the call retention; dead-letter topics
// keep the broker's default.
func TestCallRetention(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	e.dial(kafkatransport.WithReplyTopic("replies", 2), kafkatransport.WithCallRetention(10*time.Minute))
	request := e.prefix + testingv1.EchoServiceKafkaTopic
	tests := []struct{ topic, want string }{
		{request, "3600000"},                 // DefaultCallRetention
		{e.prefix + "replies", "600000"},     // WithCallRetention(10m)
		{request + ".dlq", "broker default"}, // dead letters are kept longer
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			res, err := e.admin().DescribeConfigs(ctxTimeout(t, 20*time.Second), []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: tt.topic}})
			if err != nil || len(res) != 1 || res[0].Error.Code() != kafka.ErrNoError {
				t.Fatalf("DescribeConfigs: %v %v", err, res)
			}
			entry := res[0].Config["retention.ms"]
			got := entry.Value
			if entry.Source != kafka.ConfigSourceDynamicTopic {
				got = "broker default"
			}
			if got != tt.want {
				t.Errorf("retention.ms = %s (source %v), want %s", entry.Value, entry.Source, tt.want)
			}
		})
	}
}
