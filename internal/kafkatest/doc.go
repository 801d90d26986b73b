// Package kafkatest gives tests and benchmarks a Kafka broker.
//
// When the environment variable KAFKA_BROKERS is set (for example
// "localhost:9092"), [Brokers] returns it and the suite runs against that
// real Kafka cluster. Otherwise it starts an in-process broker
// (internal/embedkafka, built on kfake) for the calling test and stops it when
// the test ends. The same suite therefore runs against both.
//
// Tests sharing one real cluster must not collide: name every topic and
// consumer group with [TopicPrefix].
package kafkatest
