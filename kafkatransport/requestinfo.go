package kafkatransport

import (
	"context"

	"google.golang.org/grpc"
)

// RequestInfo describes the request record a method handler is running
// for: a unary call's request, or a stream's opening record.
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
	var req *request
	switch s := grpc.ServerTransportStreamFromContext(ctx).(type) {
	case *serverStream:
		req = s.req
	case *streamTransport:
		req = s.st.req
	}
	if req == nil {
		return RequestInfo{}, false
	}
	m := req.msg
	info = RequestInfo{ID: string(req.env.id), Caller: req.caller, Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)}
	if m.TopicPartition.Topic != nil {
		info.Topic = *m.TopicPartition.Topic
	}
	return info, true
}
