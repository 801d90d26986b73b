// Package kafkatest gives tests and benchmarks a Kafka broker, and runs a
// service's server and clients on it for the length of a test:
//
//	func TestGreeter(t *testing.T) {
//		brokers := kafkatest.Brokers(t)
//		prefix := kafkatransport.WithTopicPrefix(kafkatest.TopicPrefix(t))
//		srv, err := kafkatransport.NewServer(brokers, prefix)
//		if err != nil {
//			t.Fatal(err)
//		}
//		greeterv1.RegisterGreeterServiceKafkaServer(srv, greeter{})
//		kafkatest.Serve(t, srv)
//		client := greeterv1.NewGreeterServiceKafkaClient(kafkatest.Dial(t, brokers, prefix))
//		// ... call client as any gRPC client
//	}
//
// When the environment variable KAFKA_BROKERS is set (for example
// "localhost:9092"), [Brokers] returns it and the suite runs against that
// real Kafka cluster. Otherwise it starts an in-process broker
// (kafkatransport/embedkafka, built on kfake) for the calling test and stops it when
// the test ends. The same suite therefore runs against both.
//
// Tests sharing one real cluster must not collide: name every topic and
// consumer group with [TopicPrefix].
package kafkatest
