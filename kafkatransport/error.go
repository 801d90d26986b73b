package kafkatransport

import (
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kafkav1 "github.com/kgrpc/platform/gen/kgrpc/kafka/v1"
)

// replyStatus reads the status of a reply envelope. Details travel as a
// whole google.rpc.Status; when they do not decode, or disagree with the
// code, code and message alone are kept.
func replyStatus(env *kafkav1.ReplyEnvelope) *status.Status {
	if d := env.GetStatusDetails(); len(d) > 0 {
		var p spb.Status
		if err := proto.Unmarshal(d, &p); err == nil && p.Code == env.GetCode() {
			return status.FromProto(&p)
		}
	}
	return status.New(codes.Code(env.GetCode()), env.GetMessage())
}

// setStatus puts st into a reply envelope.
func setStatus(env *kafkav1.ReplyEnvelope, st *status.Status) {
	env.Code = int32(st.Code())
	env.Message = st.Message()
	if p := st.Proto(); len(p.GetDetails()) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			env.StatusDetails = b
		}
	}
}
