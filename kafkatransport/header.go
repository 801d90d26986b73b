package kafkatransport

import (
	"strconv"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/metadata"
)

// Header names of the wire format; doc.go specifies them.
const (
	hdrRPC         = "rpc"
	hdrTraceparent = "traceparent"
	hdrTracestate  = "tracestate"

	hdrEventType = "ev-type"
	hdrEventID   = "ev-id"

	hdrDLQError     = "dlq-error"
	hdrDLQAttempts  = "dlq-attempts"
	hdrDLQTopic     = "dlq-topic"
	hdrDLQPartition = "dlq-partition"
	hdrDLQOffset    = "dlq-offset"
	hdrDLQGroup     = "dlq-group"

	hdrDLQStub        = "dlq-stub"
	hdrDLQSize        = "dlq-size"
	hdrDLQKeySize     = "dlq-key-size"
	hdrDLQHeadersSize = "dlq-headers-size"
)

// header returns the first value of the header named key.
func header(hs []kafka.Header, key string) ([]byte, bool) {
	for _, h := range hs {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// traceHeaders returns the W3C trace context of md as record headers, which
// Kafka tracing tools read from records.
func traceHeaders(hs []kafka.Header, md metadata.MD) []kafka.Header {
	for _, k := range []string{hdrTraceparent, hdrTracestate} {
		if v := md.Get(k); len(v) > 0 {
			hs = append(hs, kafka.Header{Key: k, Value: []byte(v[0])})
		}
	}
	return hs
}

// traceMD returns the W3C trace context headers of a record as metadata, or
// nil.
func traceMD(hs []kafka.Header) metadata.MD {
	var md metadata.MD
	for _, h := range hs {
		if h.Key == hdrTraceparent || h.Key == hdrTracestate {
			if md == nil {
				md = metadata.MD{}
			}
			md.Append(h.Key, string(h.Value))
		}
	}
	return md
}

func itoa(i int64) []byte { return strconv.AppendInt(nil, i, 10) }
