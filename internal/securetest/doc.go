// Package securetest is the end-to-end test of the shop over secure
// channels: the split binaries (gateway, usersvc, productsvc, ordersvc) run
// against the secure Apache Kafka broker of scripts/kafka.sh (KAFKA_SECURE=1:
// SASL_SSL with SCRAM-SHA-512 over TLS, KRaft's StandardAuthorizer), each as
// its own principal with its own --kafka-config-file, under the ACLs of
// internal/kafkaacl for a fresh topic prefix. A REST walkthrough (register,
// log in, list products, order, see the order, cancel it and see the stock
// come back through productsvc's event subscription) must work with no
// authorization error in any unit's log; then plain confluent-kafka-go
// clients show that a unit's principal cannot read another service's
// request topic (nor write into it, nor join its consumer group), and that a
// client without TLS, without SASL, with a wrong password or without the CA
// cannot connect.
//
// It runs only when SECURE_SUITE=1 and expects the secure broker to be
// running (scripts/test.sh starts it for its secure pass):
//
//	KAFKA_SECURE=1 scripts/kafka.sh start
//	SECURE_SUITE=1 go test -count=1 ./internal/securetest
//	KAFKA_SECURE=1 scripts/kafka.sh stop
//
// The test grants the ACLs itself (scripts/kafka.sh acls PREFIX). The
// environment of scripts/kafka.sh (KAFKA_CACHE, KAFKA_PORT, ...) applies.
package securetest
