// Package embedkafka runs an in-process, single-broker Kafka cluster built on
// github.com/twmb/franz-go/pkg/kfake, which speaks the Kafka wire protocol.
//
// It is the broker of the all-in-one binary, of cmd/devkafka and (through
// kafkatransport/kafkatest) of `go test` when no real Kafka is configured. Clients
// connect to it exactly as to Apache Kafka; confluent-kafka-go (librdkafka)
// producers, consumer groups, offset commits, direct partition assignment and
// the admin client's CreateTopics all work against it (see embedkafka_test.go,
// which is the executable record of that claim).
//
// With [Config.DataDir] set, topics, records, committed offsets and groups are
// kept on disk and reloaded by the next [Start] on the same directory.
//
// Differences from Apache Kafka worth knowing:
//
//   - Consumer-group rebalances complete as soon as every known member has
//     rejoined; there is no group.initial.rebalance.delay.ms (as if it were 0).
//   - The minimum session timeout accepted from group members is 100ms
//     (Kafka: group.min.session.timeout.ms=6000), so tests may use short
//     session timeouts; code that must also run against real Kafka should not
//     go below 6000ms.
//   - Topic creation is synchronous: a topic is in the metadata as soon as
//     CreateTopics returns.
package embedkafka
