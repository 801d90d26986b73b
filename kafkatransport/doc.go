// Package kafkatransport carries gRPC-style calls over Apache Kafka with
// confluent-kafka-go (librdkafka): request-reply for unary calls and
// fire-and-forget events.
//
// # Using it
//
// ClientConn implements grpc.ClientConnInterface and Server implements
// grpc.ServiceRegistrar, so the code protoc-gen-go-grpc generates runs over
// Kafka unchanged:
//
//	conn, err := kafkatransport.Dial(ctx, "localhost:9092")
//	client := usersv1.NewUserServiceKafkaClient(conn) // or NewUserServiceClient(conn)
//
//	srv, err := kafkatransport.NewServer("localhost:9092", kafkatransport.WithMaxConcurrency(64))
//	usersv1.RegisterUserServiceKafkaServer(srv, impl)
//	err = srv.Serve(ctx) // returns after a graceful drain once ctx ends
//
// Options are typed by role, as in connect-go: Dial takes ClientOption,
// NewServer ServerOption, NewPublisher PublisherOption and NewSubscriber
// SubscriberOption. An Option (WithLogger, WithKafkaConfig, WithTopicPrefix,
// WithInstanceID, WithReplicationFactor, WithOptions) applies to every role;
// WithPartitions to the roles that create request and event topics (server,
// publisher, subscriber), WithDrainTimeout to those that run handlers
// (server, subscriber), WithDefaultTimeout to all but the publisher. An option
// of another role does not compile, and an invalid value (a negative count,
// a non-positive duration, an empty name, a nil logger) makes the
// constructor return an error naming the option.
//
// Events are published and consumed through the typed publishers and
// Subscribe functions protoc-gen-go-kafka generates on top of Publisher and
// Subscriber. Code that handles events of many types (an outbox relay, say)
// publishes any of them with PublishEvent, which reads the topic and key
// from the message's (kgrpc.kafka.v1.event) option as the generated code
// does (EventSpecOf); a message without the option is ErrNotEvent.
//
// # Topics
//
//   - Request topic: one per service, named by the service's full protobuf
//     name ("shop.users.v1.UserService") unless the service option
//     (kgrpc.kafka.v1.kafka).topic overrides it. All instances of a service
//     consume it in one consumer group named like the topic.
//   - Reply topic: one shared topic, "kgrpc.replies" by default (16
//     partitions). Each client reads one partition of it by direct assignment
//     (no consumer group, no rebalance), starting at the partition's end as it
//     is when the client starts. Clients sharing a partition ignore each
//     other's replies.
//   - Event topic: one per event message, named by its full protobuf name
//     unless (kgrpc.kafka.v1.event).topic overrides it; keyed by the field
//     the option names, normally the aggregate id.
//   - Dead-letter topic: "<group>.dlq", one per subscribing consumer group.
//
// Every name above, consumer groups included, is preceded by the
// WithTopicPrefix prefix. Each topic is created, when missing, by the role
// that owns it: a server creates its request topics when it starts, a
// publisher an event topic on its first publish, a subscriber its event and
// dead-letter topics when it starts, all with the WithPartitions count (6
// by default); a client creates the reply topic (WithReplyTopic: 16
// partitions). A client never creates a request topic, nor lets the broker
// auto-create one (its producer sets allow.auto.create.topics=false): a call
// to a service whose topic does not exist waits for it and fails with
// DeadlineExceeded at its deadline, or Unavailable if the producer gives up
// first.
//
// # Request record
//
// Key: the value of the method's (kgrpc.kafka.v1.kafka_method).partition_key
// field as text (integers in decimal, bools as "true"/"false", bytes as is),
// or none. Value: the request message in protobuf binary encoding. Headers:
//
//	rpc          kgrpc.kafka.v1.RequestEnvelope, protobuf binary:
//	             method ("/pkg.v1.Service/Method"), id (correlation id,
//	             "<instance>-<run>-<seq>": run is 8 random hex digits
//	             per ClientConn, seq counts calls in base 36), reply_topic,
//	             reply_partition,
//	             deadline_unix_ms (absolute deadline), metadata (the call's
//	             outgoing gRPC metadata, one entry per key, values as raw
//	             bytes; a receiver drops entries without key or values)
//	traceparent  W3C trace context, copied from the "traceparent" metadata
//	tracestate   W3C trace state, copied from the "tracestate" metadata
//
// The envelope is one header rather than one header per field because
// confluent-kafka-go converts every header through cgo with C allocations in
// both directions; five headers per request cost a quarter of the round-trip
// throughput. kgrpc/kafka/v1/envelope.proto defines it; any protobuf
// library reads and writes it. The transport itself encodes and decodes both
// envelopes without reflection (wire.go), in the encoding the generated code
// produces; wire_test.go checks both directions against it.
//
// A call whose context has no deadline gets one of WithDefaultTimeout (30s).
// A server drops, without running the handler or replying, a request whose
// deadline has passed when it is fetched, or when it gets its concurrency
// slot after waiting for one: its caller has given up. Clocks of clients
// and servers are assumed to agree to well within a deadline. A
// request without a decodable envelope, correlation id or reply address is
// logged and dropped.
//
// # Reply record
//
// Topic and partition: those of the request's envelope. Key: none. Value:
// the response message in protobuf binary encoding when the status is OK,
// else empty. Headers:
//
//	rpc  kgrpc.kafka.v1.ReplyEnvelope, protobuf binary: id (the request's),
//	     code (gRPC status code, 0 for OK), message (bytes that are not
//	     UTF-8 replaced by U+FFFD, as protobuf strings must be UTF-8),
//	     status_details (a google.rpc.Status in protobuf binary encoding,
//	     only when the status has details), header and trailer (response
//	     metadata set with grpc.SetHeader, grpc.SendHeader and
//	     grpc.SetTrailer; keys that are not UTF-8 are dropped and logged)
//
// # Status codes
//
// Handler errors travel as they are: a status error keeps its code, message
// and details; any other error becomes Unknown, as in grpc-go. A handler
// panic becomes Internal. A request value that does not decode as the
// method's request type is answered InvalidArgument; an unknown method
// Unimplemented. On the client, a method name that is not UTF-8 fails with
// Internal before anything is sent, a request the broker does not take (broker
// down, delivery timeout) fails with Unavailable (a missing request topic:
// see Topics), one over the
// broker's message size with ResourceExhausted, the context's deadline with
// DeadlineExceeded and its cancellation with Canceled. A reply whose
// envelope does not decode is logged and ignored (the call then times out).
//
// # Event record
//
// Key: the event's key field. Value: the event in protobuf binary encoding.
// Headers: ev-type (the message's full name), ev-id (unique per publish), and
// traceparent/tracestate when the publishing context carries them.
//
// A subscriber handles the records of a partition in order. A handler error
// is retried (WithEventRetry: 4 attempts, backoff from 100ms doubling up to
// 5s); a record that still fails, or that does not decode, or whose ev-type
// names another message, is copied to the dead-letter topic with its key,
// value and headers plus dlq-error (the error text), dlq-attempts,
// dlq-topic, dlq-partition, dlq-offset and dlq-group, and the subscriber
// moves on.
//
// # Delivery guarantees
//
// A server stores a request's offset for commit only once the request is
// finished (its reply acknowledged by the broker, or given up on after the
// producer's retries, or the request dropped as expired or undecodable) and
// every earlier request of its partition is finished, so requests run at
// least once: after a crash the uncommitted ones are served again by another
// instance. Request and event consumers always store offsets themselves
// (enable.auto.offset.store=false whatever WithKafkaConfig says). Handlers
// run concurrently (at most WithMaxConcurrency), also within a partition, so
// one slow call does not hold up the others.
//
// Keyed requests keep their order, as in the key-ordered mode of Confluent's
// Parallel Consumer: requests with the same record key (the partition_key
// field) in a partition are handled one after another in offset order (the
// order Kafka stored them), the next starting once the previous handler has
// returned and its reply was handed to the producer; requests with other
// keys, and keyless ones, run concurrently beside them.
//
// One client's calls with a key are stored in their order when each is made
// after the previous one returned; calls it makes concurrently may not be:
// the client's producer is not idempotent and has up to two requests in
// flight (see librdkafka settings), so a batch retried after a broker error
// can land after the next one. Idempotence would keep them in order at the
// cost of a third of the throughput, so the transport leaves it off.
//
// A request waiting for its key holds no WithMaxConcurrency slot: when the
// request before it ends, it takes a slot in line with the others, so a busy
// key never holds more than one slot and never stops the other keys,
// partitions or services. Each partition holds about four times
// WithMaxConcurrency waiting requests at most: when that many wait, the
// server pauses fetching that partition (librdkafka drops what it fetched of
// the partition beyond the last record delivered, and fetches again from
// there on resume) and resumes it once half of them have left the queue;
// its other partitions go on. A waiting request whose deadline passes is
// dropped unrun.
//
// When the server stops, or a revoke of the partition begins, no waiting
// request starts any more: a revoke waits (at most 10s, or WithDrainTimeout
// if shorter) for the running requests only, and the waiting ones are left
// uncommitted for the partition's next owner. Each assignment of a partition
// has its own key queues, so a partition lost and given straight back serves
// its refetched requests; the requests of the lost assignment still running
// finish, and those still waiting are abandoned. A request still running
// when the 10s wait ends may then run a second time beside its refetched
// copy, so the order of its key holds again only from the next request on.
// Delivery stays at-least-once: after a crash or a revoke, the requests of a
// key from the lowest uncommitted one on run again, in their order.
//
// Stopping drains: fetching stops, in-flight handlers finish
// (at most WithDrainTimeout), replies are flushed, offsets committed, and the
// consumer group is left, handing partitions to the other instances at once.
//
// # librdkafka settings
//
// DefaultProducerConfig and DefaultConsumerConfig return the settings the
// transport starts from, each explained where it is defined: producers send
// at once (linger.ms=0) with at most two requests in flight so that records
// batch under load, keyless records stick to a partition for 10ms, acks=all,
// idempotence on for event publishers only (so a client's concurrent calls
// with one key may be reordered by a retry); consumers fetch with
// fetch.min.bytes=1 and fetch.wait.max.ms=100, use cooperative-sticky
// assignment, session.timeout.ms=6000, and auto-commit explicitly stored
// offsets every 500ms. confluent-kafka-go's producer channels are bounded
// (go.events.channel.size=8192, go.produce.channel.size=1) instead of a
// million entries each, which the garbage collector would scan. Every client
// retries a lost broker connection at least once a second
// (reconnect.backoff.max.ms=1000 instead of 10s): after a 20s outage of a
// single Apache Kafka broker, a reply consumer reads again within 0.25s of
// the broker answering (3.8s with librdkafka's default) and a server's or
// subscriber's group member within about 6.7s (9.2s), the rest being the
// broker holding the member's rejoin until its old session, which timed out
// during the outage, expires (session.timeout.ms). RELIABILITY.md has the
// end-to-end figure.
//
// WithKafkaConfig overrides any of them and adds others (security.protocol,
// sasl.*, ssl.*, ...); properties of one client kind are not given to the
// other.
package kafkatransport
