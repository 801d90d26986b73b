package kafkatransport

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/metadata"
)

// Header names of the wire format; doc.go specifies them.
const (
	hdrMethod         = "rpc-method"
	hdrID             = "rpc-id"
	hdrReplyTopic     = "rpc-reply-topic"
	hdrReplyPartition = "rpc-reply-partition"
	hdrDeadline       = "rpc-deadline"
	hdrStatus         = "rpc-status"
	hdrMessage        = "rpc-message"
	hdrStatusDetails  = "rpc-status-details"
	hdrTraceparent    = "traceparent"
	hdrTracestate     = "tracestate"
	prefixMD          = "md-"
	prefixTrailer     = "mdt-"

	hdrEventType = "ev-type"
	hdrEventID   = "ev-id"

	hdrDLQError     = "dlq-error"
	hdrDLQAttempts  = "dlq-attempts"
	hdrDLQTopic     = "dlq-topic"
	hdrDLQPartition = "dlq-partition"
	hdrDLQOffset    = "dlq-offset"
	hdrDLQGroup     = "dlq-group"
)

// header returns the first value of the header named key.
func header(hs []kafka.Header, key string) (string, bool) {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// appendMD appends md as headers named prefix+key, one per value. Binary
// ("-bin") values are base64 encoded as in gRPC over HTTP/2. The W3C trace
// context keys travel as their own headers.
func appendMD(hs []kafka.Header, prefix string, md metadata.MD) []kafka.Header {
	for k, vs := range md {
		for _, v := range vs {
			if prefix == prefixMD && (k == hdrTraceparent || k == hdrTracestate) {
				hs = append(hs, kafka.Header{Key: k, Value: []byte(v)})
				continue
			}
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			hs = append(hs, kafka.Header{Key: prefix + k, Value: []byte(v)})
		}
	}
	return hs
}

// readMD collects the headers named prefix+key into metadata. It returns nil
// when there are none. A binary value that is not valid base64 is dropped.
func readMD(hs []kafka.Header, prefix string) metadata.MD {
	var md metadata.MD
	for _, h := range hs {
		var k string
		switch {
		case strings.HasPrefix(h.Key, prefix):
			k = strings.ToLower(h.Key[len(prefix):])
		case prefix == prefixMD && (h.Key == hdrTraceparent || h.Key == hdrTracestate):
			k = h.Key
		default:
			continue
		}
		if k == "" {
			continue
		}
		v := string(h.Value)
		if strings.HasSuffix(k, "-bin") {
			b, err := decodeBinHeader(v)
			if err != nil {
				continue
			}
			v = string(b)
		}
		if md == nil {
			md = metadata.MD{}
		}
		md[k] = append(md[k], v)
	}
	return md
}

// decodeBinHeader accepts padded and unpadded base64, as gRPC does.
func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

func itoa(i int64) []byte { return strconv.AppendInt(nil, i, 10) }
