// Package faulttest is the shop's fault suite: the deployable binaries
// (gateway, usersvc, productsvc, ordersvc) as processes under concurrent
// REST load, while each service in turn is killed with SIGKILL and
// restarted, the broker is stopped for 20s and started again, and poison
// records (undecodable, oversized, wrong type, no envelope) go into request
// and event topics. Every logical operation carries its own Idempotency-Key
// and is retried with it until a definite answer, as a careful client would;
// at the end the suite checks that nothing acknowledged was lost or applied
// twice, that stock adds up, that every poison record reached a dead-letter
// topic and that the consumers went on, and it prints its figures, one line
// each, prefixed "figure:". RELIABILITY.md records them.
//
// The suite stops and starts its broker, so it never uses the shared one of
// KAFKA_BROKERS: it starts a private single-node Apache Kafka through
// scripts/kafka.sh (cache .cache/kafka-faults, ports FAULT_KAFKA_PORT and
// FAULT_KAFKA_PORT+1, default 19192 and 19193, sharing the jars of
// .cache/kafka), or, with FAULT_BROKER=devkafka or without Java, a
// cmd/devkafka process with a data directory. It runs only when
// FAULT_SUITE=1 (scripts/test.sh sets it in a step of its own), since it
// takes two to four minutes. The services keep their data in PostgreSQL
// when TEST_POSTGRES_DSN is set, each in a database of its own, and in
// SQLite files otherwise.
//
// TestMeasureReconnect (FAULT_MEASURE=1) measures, on the same private
// broker, how long a producer, a consumer group member and a consumer of an
// assigned partition take to work again after a 20s outage; the
// reconnect settings of kafkatransport/config.go rest on it.
package faulttest
