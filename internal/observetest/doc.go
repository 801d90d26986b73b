// Package observetest checks, with the split binaries on a real broker
// (kfake, or Apache Kafka when KAFKA_BROKERS is set), that every call is
// visible: one REST call makes one trace across the units, parent-linked
// hop by hop, exported over OTLP/HTTP to a receiver inside the test; events
// carry the trace of the call that wrote them; /metrics on every process
// shows the gRPC, Kafka and HTTP series moving; and log lines inside a call
// carry its trace id.
package observetest
