// Package kafkaacl is the access the shop's units need on a broker that
// authorizes every request (Apache Kafka with KRaft's StandardAuthorizer, as
// scripts/kafka.sh starts it with KAFKA_SECURE=1): one principal per unit,
// named like the unit (gateway, usersvc, productsvc, ordersvc), each allowed
// only its own topics and consumer groups under a topic prefix, and Apply,
// which grants them with an admin client.
//
// Grants lists them, for topic prefix P (kafkatransport.WithTopicPrefix):
//
//   - usersvc, productsvc and ordersvc each own the topics and consumer
//     groups of their protobuf package, a PREFIXED pattern P+"shop.users.v1."
//     (".products.", ".orders."): their request topic and its consumer
//     group, its ".dlq", their event topics, their subscriber groups and
//     dead-letter topics. They read, write, create and describe those
//     topics and read the groups. Each also owns its health service's
//     request topic (HealthTopic: P+"grpc.health.v1.Health.<unit>",
//     LITERAL), its ".dlq" and its consumer group.
//   - Every service writes replies to the shared reply topic P+"kgrpc.replies"
//     (LITERAL), and reads, creates and describes it: a server's stream
//     inbox is a partition of it, read through a consumer group named
//     "kgrpc-inbox-<instance>" (PREFIXED "kgrpc-inbox-", read; it holds no
//     offsets). Every service serves streams, the health service's Watch
//     at least. It may use the idempotent producer (IDEMPOTENT_WRITE on the
//     cluster: its events' publisher turns idempotence on).
//   - A unit that calls services (gateway, ordersvc) creates, describes and
//     reads the reply topic, and writes it (the frames of its streams go
//     to the servers' inboxes there), reads the consumer groups named
//     "kgrpc-reply-<instance>" of its reply consumer (PREFIXED "kgrpc-reply-",
//     which kafkatransport does not prefix; they hold no offsets), and writes
//     (never reads) the request topics of the services it calls, LITERAL
//     names: the gateway all three and their units' health topics,
//     ordersvc productsvc's.
//   - A subscriber reads, describes and creates (kafkatransport creates the
//     topics it subscribes to when they are missing) the LITERAL event topics
//     of other services it consumes: productsvc reads
//     shop.orders.v1.OrderStatusChanged.
//
// Nothing else is allowed: no unit reads another service's request topic or
// writes another service's events, and the gateway reads no request topic at
// all. The broker's own super user does the setup.
package kafkaacl
