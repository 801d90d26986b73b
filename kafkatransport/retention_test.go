package kafkatransport_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
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

// A request naming a reply topic the server does not reply to is
// dead-lettered with the reason and never runs, and no topic is created
// for it.
func TestForeignReplyTopicNotCreated(t *testing.T) {
	e := newEnv(t)
	impl := newEcho("a")
	// Its reply is never delivered: stopping must not wait for it long.
	e.serve(impl, kafkatransport.WithDrainTimeout(time.Second))
	foreign := e.prefix + "foreign-replies"
	env, err := proto.Marshal(&kafkav1.RequestEnvelope{
		Method:         testingv1.EchoService_Sleep_FullMethodName,
		Id:             "foreign-1",
		ReplyTopic:     foreign,
		DeadlineUnixMs: time.Now().Add(6 * time.Second).UnixMilli(), // the server gives the reply up then
	})
	if err != nil {
		t.Fatal(err)
	}
	value, err := proto.Marshal(&testingv1.SleepRequest{Id: "foreign", DurationMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	topic := e.prefix + testingv1.EchoServiceKafkaTopic
	produceTo(t, e.rawProducer(), topic, 0, nil, value, kafka.Header{Key: "rpc", Value: env})
	letters := e.readRecords(topic+".dlq", 1)
	if hs := headerMap(letters[0]); !strings.Contains(hs["dlq-error"], "not one this server replies to") {
		t.Errorf("dead letter reason %q", hs["dlq-error"])
	}
	if n := impl.startedCount("foreign"); n != 0 {
		t.Fatalf("the request ran %d times", n)
	}
	if e.topicExists("foreign-replies") {
		t.Fatalf("topic %s was created", foreign)
	}
}

// A request whose reply address names a partition the reply topic does
// not have can never be answered: it is dead-lettered with the reason
// before its handler runs. So is one whose deadline is in seconds rather
// than milliseconds. A reply topic the server replies to but that does not
// exist (yet) is not created by the reply. The server keeps serving.
func TestUnreachableReplyAddressNotRun(t *testing.T) {
	e := newEnv(t)
	impl := newEcho("a")
	// The reply to the missing topic is never delivered: stopping must not
	// wait for it long.
	e.serve(impl, kafkatransport.WithDrainTimeout(time.Second))
	c := testingv1.NewEchoServiceKafkaClient(e.dial()) // creates the default reply topic
	waitServing(t, c)
	missing := e.prefix + "replies" // allowed (testReplyTopics), never created here
	inAMinute := time.Now().Add(time.Minute)
	tests := []struct {
		name, replyTopic string
		partition        int32
		deadline         int64
		reason           string
	}{
		{"partition out of range", e.prefix + "kgrpc.replies", 999, inAMinute.UnixMilli(), "reply partition 999 out of range"},
		{"deadline in seconds", e.prefix + "kgrpc.replies", 0, inAMinute.Unix(), "milliseconds since the Unix epoch expected"},
	}
	topic := e.prefix + testingv1.EchoServiceKafkaTopic
	send := func(id, replyTopic string, partition int32, deadline int64) {
		env, err := proto.Marshal(&kafkav1.RequestEnvelope{
			Method:         testingv1.EchoService_Sleep_FullMethodName,
			Id:             id,
			ReplyTopic:     replyTopic,
			ReplyPartition: partition,
			DeadlineUnixMs: deadline,
		})
		if err != nil {
			t.Fatal(err)
		}
		value, err := proto.Marshal(&testingv1.SleepRequest{Id: id, DurationMs: 1})
		if err != nil {
			t.Fatal(err)
		}
		produceTo(t, e.rawProducer(), topic, 0, nil, value, kafka.Header{Key: "rpc", Value: env})
	}
	for i, tt := range tests {
		send(fmt.Sprint("unreachable-", i), tt.replyTopic, tt.partition, tt.deadline)
	}
	// A reply topic that does not exist may be one a client has just
	// created: the request runs, and its reply creates no topic.
	send("missing-topic", missing, 0, inAMinute.UnixMilli())
	var reasons []string // dead letters are written concurrently: any order
	for _, m := range e.readRecords(topic+".dlq", len(tests)) {
		reasons = append(reasons, headerMap(m)["dlq-error"])
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, tt.reason) }) {
				t.Errorf("dead letter reasons %q, want one to say %q", reasons, tt.reason)
			}
			if n := impl.startedCount(fmt.Sprint("unreachable-", i)); n != 0 {
				t.Fatalf("the request ran %d times", n)
			}
		})
	}
	for end := time.Now().Add(20 * time.Second); impl.startedCount("missing-topic") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the request to a missing reply topic did not run")
		}
	}
	time.Sleep(time.Second) // its reply's attempt
	if e.topicExists("replies") {
		t.Fatalf("topic %s was created", missing)
	}
	if _, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Message: "still here"}); err != nil {
		t.Fatalf("Echo after unreachable requests: %v", err)
	}
}

// CreateTopics creates the topic of every event type a file declares, so
// that a subscriber that is not a Go Subscriber (which creates its topics
// itself) finds it before the first event.
func TestPublisherCreatesEventTopics(t *testing.T) {
	e := newEnv(t)
	pub, err := kafkatransport.NewPublisher(e.brokers, e.common())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	topic := testingv1.PingedKafkaTopic // topicExists adds the prefix
	if e.topicExists(topic) {
		t.Fatalf("topic %s exists before CreateTopics", topic)
	}
	if err := pub.CreateTopics(ctxTimeout(t, 30*time.Second), testingv1.File_kgrpc_testing_v1_echo_proto); err != nil {
		t.Fatal(err)
	}
	if !e.topicExists(topic) {
		t.Fatalf("topic %s missing after CreateTopics", topic)
	}
	// Again: the topics exist, nothing to do.
	if err := pub.CreateTopics(ctxTimeout(t, 30*time.Second), testingv1.File_kgrpc_testing_v1_echo_proto); err != nil {
		t.Fatal(err)
	}
}
