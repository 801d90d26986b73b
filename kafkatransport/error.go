package kafkatransport

import (
	"strconv"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// replyStatus reads the status of a reply record. A reply without a valid
// rpc-status header is a protocol error, reported as Internal.
func replyStatus(hs []kafka.Header) (*status.Status, error) {
	var code, msg string
	var details []byte
	var haveCode bool
	for _, h := range hs {
		switch h.Key {
		case hdrStatus:
			code, haveCode = string(h.Value), true
		case hdrMessage:
			msg = string(h.Value)
		case hdrStatusDetails:
			details = h.Value
		}
	}
	if !haveCode {
		return nil, status.Error(codes.Internal, "kafkatransport: reply without rpc-status header")
	}
	n, err := strconv.ParseUint(code, 10, 32)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "kafkatransport: reply with malformed rpc-status %q", code)
	}
	if len(details) > 0 {
		var p spb.Status
		if err := proto.Unmarshal(details, &p); err == nil && p.Code == int32(n) {
			return status.FromProto(&p), nil
		}
	}
	return status.New(codes.Code(n), msg), nil
}

// statusHeaders encodes st as reply headers: the code, the message, and the
// whole google.rpc.Status when it carries details.
func statusHeaders(hs []kafka.Header, st *status.Status) []kafka.Header {
	hs = append(hs, kafka.Header{Key: hdrStatus, Value: itoa(int64(st.Code()))})
	if st.Message() != "" {
		hs = append(hs, kafka.Header{Key: hdrMessage, Value: []byte(st.Message())})
	}
	if p := st.Proto(); len(p.GetDetails()) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			hs = append(hs, kafka.Header{Key: hdrStatusDetails, Value: b})
		}
	}
	return hs
}
