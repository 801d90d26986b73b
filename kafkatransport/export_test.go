package kafkatransport

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// SilenceForTest makes c stop sending heartbeats on its streams, as a
// client process that died would, without telling their servers.
func SilenceForTest(c *ClientConn) { c.silenced.Store(true) }

// InboxPartitionForTest returns the partition of the reply topic where s
// reads its streams' frames (-1 before Serve set it up).
func InboxPartitionForTest(s *Server) int32 {
	if s.streams == nil {
		return -1
	}
	return s.streams.inboxPartition
}

// FailProducesForTest makes the next n requests of c fail as the producer
// refusing them would (a full queue): they never reach the broker.
func FailProducesForTest(c *ClientConn, n int32) { c.failProduces.Store(n) }

// RequestEnvelopeForTest encodes a request envelope as a client does.
func RequestEnvelopeForTest(method, id, replyTopic string, replyPartition int32, deadlineUnixMs int64, md metadata.MD) []byte {
	return appendRequestEnvelope(nil, method, []byte(id), replyTopic, replyPartition, deadlineUnixMs, md)
}

// ReplyEnvelopeForTest encodes the reply envelope of err (nil: OK) as a
// server does.
func ReplyEnvelopeForTest(id string, err error, header, trailer metadata.MD) []byte {
	var (
		code    int32
		message string
		details []byte
	)
	if err != nil {
		st := status.Convert(err)
		code, message, details = int32(st.Code()), st.Message(), statusDetails(st)
	}
	return appendReplyEnvelope(nil, []byte(id), code, message, details, header, trailer)
}

// DecodeReplyForTest decodes a reply record's envelope and value into reply
// as a client does, and returns the call's outcome and the reply's id.
func DecodeReplyForTest(env, value []byte, reply any, opts ...grpc.CallOption) (id string, err error) {
	var e replyEnvelope
	if err := e.decode(env); err != nil {
		return "", err
	}
	return string(e.id), decodeReply(&e, value, reply, opts)
}
