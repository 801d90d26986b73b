// Package outbox makes a service's events as durable as its data: events are
// written to an outbox table in the same transaction as the change they
// describe, and a relay publishes them afterwards, retrying until the broker
// takes them (at-least-once, in the order they were written). A crash between
// commit and publish loses nothing; the relay resumes on restart. It
// deletes the events it published in one transaction per batch (up to
// 100), so a crash before that commit publishes the batch again.
//
// Repositories write events through sqlstore.Tx.AddEvents (which calls Add)
// inside the unit of work of the change. A write whose events depend on the
// state it commits takes an Events[S], a function of that state.
//
// The relay decodes each row by its message type (the protobuf registry) and
// hands it to a PublishFunc. PublishTo is the one the shop uses: it
// publishes any event message on the topic and with the record key that its
// (kgrpc.kafka.v1.event) option names, read from the message's descriptor,
// so no code lists the event types. A row whose type is unknown or whose
// payload does not decode is logged and dropped; a message type without the
// event option fails with ErrUnknownEvent and is retried.
package outbox
