// Package kafkatransport carries gRPC-style calls over Apache Kafka with
// confluent-kafka-go (librdkafka): request-reply for unary calls, streams
// for server-, client- and bidirectional-streaming methods, and
// fire-and-forget events.
//
// The wire protocol is specified for implementers in other languages, with
// MUST and SHOULD, in docs/wire.md (version 1), with golden vectors in
// testdata/vectors; this documentation describes the Go implementation,
// and its Streams section is part of that specification.
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
// publisher, subscriber), WithDrainTimeout and WithStallTimeout to those
// that run handlers (server, subscriber), WithDefaultTimeout to all but the publisher. An option
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
//   - Health topic: the standard health service, grpc.health.v1.Health,
//     is a service like any other, on "grpc.health.v1.Health" by default.
//     Units that share a cluster each serve it on their own topic,
//     "grpc.health.v1.Health.<unit>" (HealthSpec), so that a check reaches
//     the unit it names and not whichever consumes a shared topic.
//   - Reflection topic: the standard server reflection service,
//     grpc.reflection.v1.ServerReflection (RegisterReflection), on
//     "grpc.reflection.v1.ServerReflection.<unit>" (ReflectionSpec) for the
//     same reason; a tool finds a cluster's units from these topics.
//   - Dead-letter topic: "<group>.dlq", one per consumer group that
//     consumes requests or events: "<request topic>.dlq" for each service's
//     request topic, and "<subscriber group>.dlq" for each subscriber.
//
// Every name above, consumer groups included, is preceded by the
// WithTopicPrefix prefix. Each topic is created, when missing, by the role
// that owns it: a server creates its request topics and their dead-letter
// topics when it starts, a publisher the event topics of the files given to
// Publisher.CreateTopics (the shop's units call it as they start) and any
// other on its first publish, a subscriber its event and dead-letter topics
// when it starts, all with the
// WithPartitions count (6 by default); a client creates the reply topic
// (WithReplyTopic: 16 partitions). Request and reply topics are created with
// retention.ms of WithCallRetention (1h): a call lives for its deadline, so
// its records, and what they carry, need not stay longer; dead-letter and
// event topics keep the broker's retention. A client never creates a request
// topic, nor lets the broker auto-create one (its producer sets
// allow.auto.create.topics=false): a call to a service whose topic does not
// exist waits for it and fails with DeadlineExceeded at its deadline, or
// Unavailable if the producer gives up first.
//
// # Request record
//
// Key: the value of the method's (kgrpc.kafka.v1.kafka_method).partition_key
// field as text (integers in decimal, bools as "true"/"false", bytes as is),
// or none. Value: the request message in protobuf binary encoding (with a
// Guard, sealed: see Record authentication). Headers:
//
//	rpc          kgrpc.kafka.v1.RequestEnvelope, protobuf binary:
//	             method ("/pkg.v1.Service/Method"), id (correlation id,
//	             "<instance>-<run>-<seq>": run is 8 random hex digits
//	             per ClientConn, seq counts calls in base 36), reply_topic,
//	             reply_partition,
//	             deadline_unix_ms (absolute deadline), metadata (the call's
//	             outgoing gRPC metadata, one entry per key in key order,
//	             values as raw bytes; a receiver lower-cases keys, appends
//	             the values of a repeated key and drops entries without
//	             key or values)
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
// slot after waiting for one: its caller has given up; it counts them
// (Metrics.RequestExpired) and logs their number at info level at most
// every 10s. Clocks of clients
// and servers are assumed to agree to well within a deadline. A request
// that cannot be answered (no rpc header, an envelope that does not decode,
// no correlation id, no reply address, a reply partition its reply topic
// does not have, checked against the brokers' metadata before anything
// runs, or a deadline before 2001, which
// is one in seconds rather than milliseconds) is logged and dead-lettered to
// "<request topic>.dlq" as a subscriber dead-letters an event (see Dead
// letters), with dlq-attempts 1 and dlq-group the request topic's consumer
// group; its offset is then committed as that of an answered request. So is
// a request whose reply topic is not one the server replies to
// (WithReplyTopics; by default only the clients' default reply topic,
// prefix included): a request cannot direct replies into a topic of its
// choosing, and no reply ever creates a topic (the producer does not let
// the broker auto-create one).
//
// # Retries and hedges
//
// A ClientConn sends a unary call's request again, within the call's
// deadline, only where that cannot repeat an effect (WithRetry,
// RetryPolicy; on by default: DefaultRetryPolicy, 3 attempts in all,
// backoff from 100ms doubling to at most 1s with ±20% jitter, hedges after
// 1s). The wire does not change: every attempt is an ordinary request
// record with its own correlation id, the call's metadata and its absolute
// deadline; the first reply of any attempt ends the call, and the replies
// of the others, when they come, are ignored as those of calls that ended.
// What is sent again depends on the method's protobuf idempotency_level
// (IdempotencyLevelOf; grpc.health.v1.Health counts as NO_SIDE_EFFECTS):
//
//   - Any method, when the request never reached the broker: the producer
//     refused it (a full queue, an unknown partition) or its delivery
//     report says the broker did not append it (unknown topic or
//     partition, no leader, not enough replicas). A delivery that timed
//     out in flight may have been stored and is not retried, nor is
//     anything after the client closed.
//   - IDEMPOTENT methods, and NO_SIDE_EFFECTS methods with a partition
//     key: also a reply with code Unavailable, after the backoff, with the
//     same key, so to the same partition (no hedging: a key orders its
//     requests).
//   - NO_SIDE_EFFECTS methods without a key (reads): also hedged. When
//     no reply came within the hedge delay, another request is sent beside
//     the first, to a partition no earlier attempt of the call used,
//     preferring partitions that answered within the last hedge delay.
//     A partition whose request (of any call) went unanswered for the
//     hedge delay, with no reply from it since, is suspect for 10s (a dead instance's
//     partitions wait for the group's session timeout, 6s, and rebalance)
//     or until a reply comes from it; while some partition of a topic is
//     suspect, requests without a key, first attempts too, are sent to a
//     partition that is not (the client reads the topic's partition count
//     from the broker's metadata in the background, every 30s; while it is
//     unknown the producer picks the partition).
//
// Methods with side effects are never sent again once the broker may have
// stored their request. Their exactly-once machinery is the idempotency
// package: a call carrying an idempotency key is retried on Unavailable by
// idempotency.RetryUnavailable, and the server's idempotency interceptor
// runs it once per key; that interceptor leaves the methods the transport
// retries alone, so the attempts of two layers do not multiply.
//
// Retries and hedges are throttled per request topic, like gRPC's
// retryThrottling (10 tokens, ratio 0.1): each attempt that failed costs
// a token, and so does each attempt still unanswered when a call that
// hedged ends without a reply; each call that got a reply gives back 0.1.
// With 5 tokens or fewer nothing is retried or hedged, so a service that
// is down gets no more than its callers' own calls. Streams are never
// retried. RetryMetrics.CallRetried counts every attempt sent again, by reason
// ("unsent", "unavailable", "hedge"), and the call's span (WithStatsHandler)
// gets a "kgrpc.retry" event for each and the kgrpc.attempts attribute.
//
// # Reply record
//
// Topic and partition: those of the request's envelope. Key: none. Value:
// the response message in protobuf binary encoding when the status is OK,
// else empty (with a Guard, either is sealed: see Record authentication).
// Headers:
//
//	rpc  kgrpc.kafka.v1.ReplyEnvelope, protobuf binary: id (the request's),
//	     code (gRPC status code, 0 for OK), message (bytes that are not
//	     UTF-8 replaced by U+FFFD, as protobuf strings must be UTF-8),
//	     status_details (a google.rpc.Status in protobuf binary encoding,
//	     only when the status has details), header and trailer (response
//	     metadata set with grpc.SetHeader, grpc.SendHeader and
//	     grpc.SetTrailer, one entry per key in key order; keys that are
//	     not UTF-8 are dropped and logged)
//
// # Status codes
//
// Handler errors travel as they are: a status error keeps its code, message
// and details; any other error becomes Unknown, as in grpc-go. A handler
// panic becomes Internal. A request value that does not decode as the
// method's request type is answered InvalidArgument; an unknown method
// Unimplemented. On the client, a method name that is not UTF-8 fails with
// Internal before anything is sent, a request the broker does not take
// (broker down, delivery timeout) fails with Unavailable (a missing request
// topic: see Topics), one over the broker's message size with
// ResourceExhausted and a google.rpc.ErrorInfo detail of reason
// ReasonRequestTooLarge ("REQUEST_TOO_LARGE") and domain ErrorDomain
// ("kgrpc.kafka"), the context's deadline with DeadlineExceeded and its
// cancellation with Canceled. A reply whose envelope does not decode is
// logged and ignored (the call then times out).
//
// # Streams
//
// The three streaming kinds run the code protoc-gen-go-grpc generates:
// ClientConn.NewStream opens a stream, and a Server serves the Streams of
// a registered service description. A stream is held by the one server
// instance that took its opening record, until it ends; it is not carried
// over to another instance and not run again after a crash (its client
// gets Unavailable and may open it again).
//
// Opening record: a request record (see Request record) on the service's
// request topic whose RequestEnvelope also carries stream
// (kgrpc.kafka.v1.StreamOpen): window and window_bytes, how many messages
// (at least 1) and bytes of message values (0: not counted) the client
// accepts before it grants more, half_closed, and heartbeat_ms, the
// client's heartbeat. For a server-streaming method the
// opening is produced with the client's one request as its value, key
// from partition_key as for a unary call, and half_closed set; for
// client-streaming and bidirectional methods it is produced by NewStream
// with no value and no key (protoc-gen-go-kafka refuses partition_key on
// them), and the messages follow as frames. id, a correlation id as for
// unary calls, is the stream's id. Openings are not ordered by key and take
// no WithMaxConcurrency slot; a server holds at most WithMaxStreams streams
// (1024) and ends one more at once with ResourceExhausted. The opening's
// offset is finished once the server has handed its answer (ACCEPT, or
// END for a refused stream) to the producer. A client whose stream no
// server has accepted within WithDefaultTimeout (30s) ends it with
// Unavailable.
//
// Every later record of a stream, in either direction, has no key, the
// value of a message (empty for the other frames) and one header,
// "kgrpc-stream": a kgrpc.kafka.v1.StreamFrame in protobuf binary
// encoding, with id (the stream's), kind, from_client set on the frames
// the client sends, and server, naming the server instance, on those the
// server sends. Server to client, frames go to the reply topic and
// partition of the opening's envelope. Client to server, they go to the
// server instance's inbox: a partition of the default reply topic the
// server reads by direct assignment from its end at start, as a client
// reads its replies, named by ACCEPT. Each end ignores frames of its own
// direction, of streams it does not hold, and, with a Guard, frames that
// do not open or come from another unit than the stream's (see below). A
// client takes the frames of the first server instance to send one and
// answers an ACCEPT of any other (an opening redelivered after a crash)
// with CANCEL to that instance's inbox.
//
//	ACCEPT      server → client, first: inbox_topic, inbox_partition,
//	            credit and credit_bytes, the client's first send window,
//	            and heartbeat_ms, the server's heartbeat
//	MESSAGE     one message, the value; seq
//	HEADER      server → client: header metadata (grpc.SendHeader); seq.
//	            Without it the header rides on the first MESSAGE or END:
//	            the server's frame of seq 1 always carries it
//	HALF_CLOSE  client → server: no more messages (CloseSend); seq
//	END         server → client, last: code, message, status_details and
//	            trailer as in a ReplyEnvelope; seq
//	CREDIT      credit and credit_bytes: the total numbers of messages
//	            and of bytes of message values, from the start of the
//	            stream, the frame's sender accepts from its peer (0 bytes
//	            when that direction counts none)
//	PING        a heartbeat
//	CANCEL      client → server: the client gave the stream up
//
// Ordering: MESSAGE, HEADER, HALF_CLOSE and END carry seq, 1, 2, 3, ... per
// direction, and the receiver delivers them in seq order whatever order
// they arrive in (a retried batch may land after the next one), dropping a
// seq it has seen and every ordered frame after HALF_CLOSE or END. A frame
// the server could not produce gives its seq to END, so the client does
// not wait for it. Flow control: a sender starts a message only while the
// messages it has sent are fewer than the credit its peer granted and,
// when the peer counts bytes, the bytes of message values it has sent are
// fewer than the byte credit (StreamOpen.window and window_bytes for the
// server, ACCEPT's credit and credit_bytes for the client, then CREDIT
// frames); so a message larger than the whole byte window still goes,
// alone. A receiver grants a window more (counted from what it has read)
// once the application has read half a window of messages or of bytes
// (WithStreamWindow, DefaultStreamWindow = 4096; WithStreamWindowBytes,
// DefaultStreamWindowBytes = 1 MiB). A slow reader therefore buffers one
// window of messages, and (from a peer that keeps to byte credit) one
// window of bytes plus one message, at most;
// a peer that sends past its credit, or more than window+8 frames ahead of
// the reader, ends the stream with ResourceExhausted. Byte credit binds a
// peer that announced a byte window of its own (the client's window_bytes
// for the server, ACCEPT's credit_bytes for the client); one that
// announced none may predate byte credit, and is held to its message
// credit only. Liveness: an end
// that has sent nothing on a stream for its heartbeat (WithStreamHeartbeat,
// DefaultStreamHeartbeat = 1s) sends PING, and an end that has heard
// nothing for three of its peer's heartbeats gives the stream up: the
// client ends it with Unavailable (about 3.5s after a server's death by
// default), the server cancels the handler's context. A client that
// cancels, whose context's deadline passes, or that finds the server
// broke these rules, sends CANCEL; a client that is closed fails its
// streams with Unavailable and cancels them. A stream's deadline is that
// of the opening's envelope (none when 0: an accepted stream may last as
// long as both ends live). A stopping server ends its streams, with
// Unavailable, and drains its unary calls within one WithDrainTimeout.
//
// Statuses: the handler's error ends the stream as a unary handler's
// error ends a call (see Status codes); a message too large for the
// producer ends it with ResourceExhausted; a stream method opened as a
// unary call, a unary method opened as a stream, and an unknown method
// end with Unimplemented; a refused caller with PermissionDenied. With a
// Guard, client frames are sealed like requests by Guard.SealStreamFrame
// (with the stream's method, for the unit that serves it on the topic the
// stream was opened on, since the inbox's topic names no unit) and opened
// by Guard.OpenRequest, server frames are sealed like replies, and a frame
// that opens as another unit's is ignored: a stream belongs to the unit
// that opened it. Stream interceptors run as over HTTP/2
// (WithStreamClientInterceptors, WithStreamServerInterceptors); stats
// handlers and WithMetrics see unary calls only.
//
// # Event record
//
// Key: the event's key field. Value: the event in protobuf binary encoding.
// Headers: ev-type (the message's full name), ev-id (unique within its topic:
// "<instance>-<nanoseconds, base 36>", or the id WithEventID gives, which a
// publisher that may publish an event again sets to the same one each time;
// subscribers deduplicate on it), and
// traceparent/tracestate when the publishing context carries a trace: with
// WithTracerProvider, those of the publisher's "send <topic>" span, a child
// of the span in the publishing context; without, copied from the
// publishing context's outgoing "traceparent"/"tracestate" metadata.
//
// A subscriber handles the records of a partition in order, one at a time,
// each partition in its own worker, so a slow or stuck handler holds up its
// own partition only. A handler error is retried (WithEventRetry: 4
// attempts, backoff from 100ms doubling up to 5s, each attempt bounded by
// WithDefaultTimeout); a record that still fails, or that does not decode,
// or whose ev-type names another message, is dead-lettered to "<group>.dlq"
// (see Dead letters), and the subscriber moves on.
//
// # Record authentication
//
// With a Guard (WithGuard; kafkatransport/trust implements it with per-unit
// keys), every record a role produces is sealed or signed after the
// transport has built it, and every record it consumes is checked before
// anything acts on it:
//
//   - A request is sealed by Guard.SealRequest for the unit serving its
//     method and checked by Guard.OpenRequest before its handler is
//     dispatched. One that is not authentic (no seal, a seal of an unknown
//     key, a changed topic, key, header or value) is dead-lettered to
//     "<request topic>.dlq" with the reason, never run and never answered.
//     One from an authentic unit that may not call the method is answered
//     PermissionDenied without running. RequestFromContext(ctx).Caller
//     names the producing unit to handlers and interceptors.
//   - A reply is sealed by Guard.SealReply for the unit that made the
//     request, error replies included, and checked by Guard.OpenReply
//     before it completes a call: a reply that does not open is logged and
//     ignored, and the call waits for the authentic one.
//   - An event is sealed by Guard.SealEvent when published and checked by
//     Guard.OpenEvent once, before its first handler attempt; one that does
//     not open is dead-lettered to "<group>.dlq" with dlq-error "event not
//     authentic: ..." and dlq-attempts 1. EventFromContext(ctx).Producer
//     names the producing unit. Watch skips, and logs, such records.
//
// The trust package's Guard seals calls with XChaCha20-Poly1305: the value
// becomes uvarint(length) || seal descriptor ("v1 <unit> <producer's key
// id> <recipient's key id>") || 24-byte random nonce || ciphertext and
// 16-byte tag, with no header added (a header more costs confluent-kafka-go
// a few per cent of a call's throughput). It signs events with Ed25519,
// adding one last header, "kgrpc-sig" ("v1 <unit> <key id> <signature,
// base64url>"). Both bind the record kind, the method or event name, the
// topic, the key and every header (another "kgrpc-sig" anywhere fails);
// the signature also the value. See that package for the key agreement and
// rotation. A role without a Guard trusts every record, as before.
//
// # Watching a topic
//
// Watch reads every partition of an event topic by direct assignment (no
// consumer group, nothing committed) from the first record at or after a
// time, in every instance that calls it: for state each instance keeps,
// such as revoked tokens. It creates the topic when missing.
//
// # Dead letters
//
// A dead letter is first produced whole: the original key, value and
// headers, then these headers:
//
//	dlq-error      why it was given up: the error text (at most 4096 bytes)
//	dlq-attempts   handler runs, in decimal (1 for an undecodable record)
//	dlq-topic      the original record's topic
//	dlq-partition  its partition, in decimal
//	dlq-offset     its offset, in decimal
//	dlq-group      the consumer group that gave it up, prefix included
//
// When the whole copy cannot be produced (too large for the producer's
// message.max.bytes, 1000000 by default, or the broker's limit, about 1 MiB;
// invalid; refused by the topic; or not acknowledged after 3 attempts, with
// backoff from 250ms, within 15s, each attempt waiting for its
// acknowledgement at most a third of the time left), a stub is produced
// instead: no value; the original key only when it is at most 4096 bytes,
// else no key and the header dlq-key-size (its size in bytes, decimal); the
// original headers only when their names and values total at most 65536
// bytes, else none of them and the header dlq-headers-size (that total,
// decimal); then the six headers above and:
//
//	dlq-stub  "true"
//	dlq-size  the original value's size in bytes, decimal
//
// When not even the stub is produced (3 attempts, within 30s of the start of
// the dead-lettering: the dead-letter topic was deleted, or ACLs refuse it),
// the record is logged at Error with its topic, partition, offset and the
// cause, Health reports the failure until a later dead letter is produced or
// for 5 minutes, and the record counts as finished: nothing retries forever.
// A dead letter that was not acknowledged in time may still arrive later, so
// a record can be dead-lettered more than once, or both whole and as a stub.
// A server or subscriber that stops while it dead-letters a record leaves
// that record uncommitted.
//
// # Health
//
// Server.Health and Subscriber.Health return nil while the role makes
// progress, else the reason: a partition whose oldest unfinished record (a
// request being served, or an event in its handler, retries or
// dead-lettering) has been so for longer than WithStallTimeout (30s); a
// dead letter that could not be produced, until one is or for 5 minutes; the
// fatal consumer
// error that ended Serve or Run. The shop's services answer 503 on /readyz
// with that text while it is not nil.
//
// The gRPC health protocol works over Kafka: register a
// grpc_health_v1.HealthServer (grpc-go's health.NewServer, or one of your
// own) on a Server and call it with grpc_health_v1.NewHealthClient; Check,
// List and Watch, a server stream (see Streams), are served. See the health topic above for several units on one
// cluster. A health server may say why it answers NOT_SERVING in the
// trailer HealthReasonKey ("kgrpc-health-reason"), which the reply carries
// like any trailer; the shop's services put there the failing check
// ("database: ...") and their Server's Health.
//
// # Observability
//
// Traces: a call's trace context travels as W3C traceparent (and
// tracestate) in the envelope's metadata, where a grpc-go stats handler or
// propagator on the caller puts it, and is repeated in the request record's
// headers of the same names for Kafka tools that read records. With
// WithStatsHandler, a Server hands the envelope's metadata to the stats
// handler as the incoming header, so otelgrpc.NewServerHandler continues
// the caller's trace; the transport adds to the tagged span the Kafka facts
// of the call (messaging.system "kafka", messaging.destination.name,
// messaging.destination.partition.id, messaging.kafka.offset,
// messaging.message.id, messaging.consumer.group.name) and rpc.system
// "grpc", rpc.service and rpc.grpc.status_code, which otelgrpc's current
// semantic conventions do not set. Events: see Event record and
// WithTracerProvider; a subscriber's "process <topic>" span starts a trace
// of its own, linked to the record's trace context.
//
// Metrics: WithMetrics reports requests in flight and expired unrun
// (servers), calls in flight and the time each waited for its reply
// (clients), records dead-lettered (servers and subscribers), the
// partitions of its request topic each server instance holds after every
// rebalance (an instance that holds none stands by, and logs a warning
// once that has lasted 10 s) and the librdkafka statistics (consumer lag, queue sizes, broker round trips) of
// every producer and consumer of a Server, ClientConn, Publisher and
// Subscriber (not of Watch), every DefaultStatisticsInterval; kafkatransport/kafkaprom
// exposes them to Prometheus. gRPC's own metrics come from interceptors,
// as over HTTP/2 (go-grpc-middleware's providers/prometheus); a request
// the Guard refuses (PermissionDenied) or of a method the service does not
// have (Unimplemented) is answered before the interceptors, so only its
// span and the stats handler see it.
//
// # Delivery guarantees
//
// A server stores a request's offset for commit only once the request is
// finished (its reply acknowledged by the broker, or given up on after the
// producer's retries, or the request dropped as expired, or dead-lettered)
// and every earlier request of its partition is finished, so requests run at
// least once: after a crash the uncommitted ones are served again by another
// instance. Request and event consumers always store offsets themselves
// (enable.auto.offset.store=false whatever WithKafkaConfig says). Handlers
// run concurrently (at most WithMaxConcurrency), also within a partition, so
// one slow call does not hold up the others.
//
// At-least-once delivery becomes an exactly-once effect with the
// interceptor of the idempotency subpackage: it runs each method with side
// effects (one that protobuf's idempotency_level does not mark
// NO_SIDE_EFFECTS or IDEMPOTENT) once per key, the call's "idempotency-key"
// metadata or, without one, its correlation id (RequestFromContext), which
// every redelivery of the record repeats, and records the outcome in the
// same database transaction as the handler's writes. A request redelivered
// after a crash, or repeated by its caller with the same key, is then
// answered with the first outcome, response or error, without running the
// handler again; the reply's header carries "idempotency-replayed: true".
// Without that interceptor, or for effects outside its store's transaction
// (a call to another service, a message sent elsewhere), handlers must be
// idempotent themselves. The client runs a call again when that is safe
// (see Retries and hedges); a call of a method with side effects that
// failed Unavailable is retried with its idempotency key by
// idempotency.RetryUnavailable. A caller that got DeadlineExceeded does not
// know whether its call ran and must repeat it with the same idempotency
// key to find out. Events are delivered at least once, and
// their handlers must be idempotent.
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
// A subscriber stores an event's offset once its handler succeeded or the
// record was dead-lettered (or, see Dead letters, could not be), in
// partition order, so events are handled at least once. Each partition's
// worker holds about 32 fetched records at most: when that many wait, the
// subscriber pauses fetching the partition (as the server does) and resumes
// it once half of them have started. Before partitions are revoked, their
// workers finish the record each is handling (at most 10s, or
// WithDrainTimeout if shorter), the records queued behind are left, and the
// offsets are committed; a record still in its handler when that wait ends
// may run again, beside its refetched copy, at the partition's next owner.
// Stopping works the same for every partition, bounded by WithDrainTimeout,
// after which handlers' contexts are cancelled.
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
