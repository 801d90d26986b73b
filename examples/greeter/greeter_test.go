package greeter_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"

	"example.com/greeter"
	greeterv1 "example.com/greeter/gen/greeter/v1"
)

// The service answers over Kafka: the embedded broker, or the cluster that
// KAFKA_BROKERS names.
func TestSayHello(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	prefix := kafkatransport.WithTopicPrefix(kafkatest.TopicPrefix(t))
	srv, err := kafkatransport.NewServer(brokers, prefix)
	if err != nil {
		t.Fatal(err)
	}
	greeterv1.RegisterGreeterServiceKafkaServer(srv, greeter.Server{})
	kafkatest.Serve(t, srv)
	client := greeterv1.NewGreeterServiceKafkaClient(kafkatest.Dial(t, brokers, prefix))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.SayHello(ctx, &greeterv1.SayHelloRequest{Name: "Ada"})
	if err != nil || resp.GetMessage() != "Hello, Ada!" {
		t.Fatalf("SayHello(Ada) = %v, %v", resp, err)
	}
	if _, err := client.SayHello(ctx, &greeterv1.SayHelloRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("SayHello() = %v, want InvalidArgument", err)
	}
}
