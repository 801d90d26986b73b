package kafkatransport

import (
	"context"

	"google.golang.org/grpc"
)

// RequestInfo describes the request record a method handler is running for.
type RequestInfo struct {
	// ID is the call's correlation id (the envelope's id). It is unique per
	// call and the same in every delivery of its record, so a handler or
	// interceptor can tell a redelivered request (see "Delivery
	// guarantees" in the package documentation) from a new call.
	ID string
	// Caller is the unit that produced the request, as the server's Guard
	// (WithGuard) authenticated it; empty without a Guard.
	Caller string
	// Topic, Partition and Offset locate the request record.
	Topic     string
	Partition int32
	Offset    int64
}

// RequestFromContext returns the request record a method handler of a
// Server is running for; ok is false outside such a handler.
func RequestFromContext(ctx context.Context) (info RequestInfo, ok bool) {
	s, ok := grpc.ServerTransportStreamFromContext(ctx).(*serverStream)
	if !ok || s.req == nil {
		return RequestInfo{}, false
	}
	m := s.req.msg
	info = RequestInfo{ID: string(s.req.env.id), Caller: s.req.caller, Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)}
	if m.TopicPartition.Topic != nil {
		info.Topic = *m.TopicPartition.Topic
	}
	return info, true
}
