package kafkatransport

import (
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// replyStatus reads the status of a reply envelope. Details travel as a
// whole google.rpc.Status; when they do not decode, or disagree with the
// code, code and message alone are kept.
func replyStatus(env *replyEnvelope) *status.Status {
	if len(env.details) > 0 {
		var p spb.Status
		if err := proto.Unmarshal(env.details, &p); err == nil && p.Code == env.code {
			return status.FromProto(&p)
		}
	}
	return status.New(codes.Code(env.code), string(env.message))
}

// statusDetails returns st as a google.rpc.Status in protobuf binary
// encoding when it carries details, and nil otherwise: code and message
// travel in their own envelope fields.
func statusDetails(st *status.Status) []byte {
	p := st.Proto()
	if len(p.GetDetails()) == 0 {
		return nil
	}
	b, err := proto.Marshal(p)
	if err != nil {
		return nil
	}
	return b
}
