package kafkatransport

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

// The "rpc" header of request and reply records holds a
// kgrpc.kafka.v1.RequestEnvelope or ReplyEnvelope in protobuf binary
// encoding (kafkatransport/proto/kgrpc/kafka/v1/envelope.proto; doc.go). The transport
// encodes and decodes them here, by hand, on every call: without
// reflection, into reused buffers, and decoding strings the receiver only
// compares or looks up as slices of the header instead of new strings.
// wire_test.go checks both directions against the generated code.

// Field numbers of envelope.proto.
const (
	reqMethod         protowire.Number = 1
	reqID             protowire.Number = 2
	reqReplyTopic     protowire.Number = 3
	reqReplyPartition protowire.Number = 4
	reqDeadline       protowire.Number = 5
	reqMetadata       protowire.Number = 6
	reqStream         protowire.Number = 7

	openWindow     protowire.Number = 1
	openHalfClosed protowire.Number = 2
	openHeartbeat  protowire.Number = 3
	openBytes      protowire.Number = 4

	frID             protowire.Number = 1
	frKind           protowire.Number = 2
	frSeq            protowire.Number = 3
	frCredit         protowire.Number = 4
	frInboxTopic     protowire.Number = 5
	frInboxPartition protowire.Number = 6
	frHeader         protowire.Number = 7
	frCode           protowire.Number = 8
	frMessage        protowire.Number = 9
	frDetails        protowire.Number = 10
	frTrailer        protowire.Number = 11
	frFromClient     protowire.Number = 12
	frServer         protowire.Number = 13
	frHeartbeat      protowire.Number = 14
	frCreditBytes    protowire.Number = 15

	repID      protowire.Number = 1
	repCode    protowire.Number = 2
	repMessage protowire.Number = 3
	repDetails protowire.Number = 4
	repHeader  protowire.Number = 5
	repTrailer protowire.Number = 6

	mdKey    protowire.Number = 1
	mdValues protowire.Number = 2
)

// requestEnvelope is a decoded RequestEnvelope. Its byte slices alias the
// header it was decoded from.
type requestEnvelope struct {
	method         []byte
	id             []byte
	replyTopic     []byte
	replyPartition int32
	deadlineUnixMs int64
	metadata       metadata.MD
	// stream is set when the record opens a stream (StreamOpen).
	stream *streamOpen
}

// streamOpen is a decoded StreamOpen.
type streamOpen struct {
	window      uint64
	halfClosed  bool
	heartbeatMs uint64
	windowBytes uint64
}

// frameKind is StreamFrame.Kind.
type frameKind int32

const (
	frameAccept    frameKind = 1
	frameMessage   frameKind = 2
	frameHeader    frameKind = 3
	frameHalfClose frameKind = 4
	frameEnd       frameKind = 5
	frameCredit    frameKind = 6
	framePing      frameKind = 7
	frameCancel    frameKind = 8
)

// ordered reports whether frames of kind k carry a sequence number and
// are delivered in its order.
func (k frameKind) ordered() bool {
	return k == frameMessage || k == frameHeader || k == frameHalfClose || k == frameEnd
}

// streamFrame is a decoded (or to be encoded) StreamFrame. Its byte slices
// alias the header it was decoded from.
type streamFrame struct {
	id             []byte
	kind           frameKind
	seq            uint64
	credit         uint64
	creditBytes    uint64
	inboxTopic     []byte
	inboxPartition int32
	header         metadata.MD
	code           int32
	message        []byte
	details        []byte
	trailer        metadata.MD
	fromClient     bool
	server         []byte
	heartbeatMs    uint64
}

// replyEnvelope is a decoded ReplyEnvelope. Its byte slices alias the
// header it was decoded from.
type replyEnvelope struct {
	id      []byte
	code    int32
	message []byte
	details []byte // a google.rpc.Status, when the status has details
	header  metadata.MD
	trailer metadata.MD
}

// errInvalidUTF8 is returned for a string field that is not UTF-8, which
// protobuf refuses too.
var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// errFieldNumber is returned for a field number past protobuf's largest,
// which protowire's tag parser lets through and protobuf refuses.
var errFieldNumber = errors.New("invalid field number")

// appendRequestEnvelope appends the encoding of a RequestEnvelope to b.
func appendRequestEnvelope(b []byte, method string, id []byte, replyTopic string, replyPartition int32, deadlineUnixMs int64, md metadata.MD) []byte {
	b = appendString(b, reqMethod, method)
	b = appendBytes(b, reqID, id)
	b = appendString(b, reqReplyTopic, replyTopic)
	b = appendVarint(b, reqReplyPartition, uint64(int64(replyPartition)))
	b = appendVarint(b, reqDeadline, uint64(deadlineUnixMs))
	return appendMetadata(b, reqMetadata, md)
}

// appendStreamOpen appends a StreamOpen field to b, a RequestEnvelope.
func appendStreamOpen(b []byte, o streamOpen) []byte {
	var inner [48]byte
	body := appendVarint(inner[:0], openWindow, o.window)
	if o.halfClosed {
		body = appendVarint(body, openHalfClosed, 1)
	}
	body = appendVarint(body, openHeartbeat, o.heartbeatMs)
	body = appendVarint(body, openBytes, o.windowBytes)
	b = protowire.AppendTag(b, reqStream, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

// appendStreamFrame appends the encoding of a StreamFrame to b.
func appendStreamFrame(b []byte, f *streamFrame) []byte {
	b = appendBytes(b, frID, f.id)
	b = appendVarint(b, frKind, uint64(int64(f.kind)))
	b = appendVarint(b, frSeq, f.seq)
	b = appendVarint(b, frCredit, f.credit)
	b = appendBytes(b, frInboxTopic, f.inboxTopic)
	b = appendVarint(b, frInboxPartition, uint64(int64(f.inboxPartition)))
	b = appendMetadata(b, frHeader, f.header)
	b = appendVarint(b, frCode, uint64(int64(f.code)))
	b = appendBytes(b, frMessage, f.message)
	b = appendBytes(b, frDetails, f.details)
	b = appendMetadata(b, frTrailer, f.trailer)
	if f.fromClient {
		b = appendVarint(b, frFromClient, 1)
	}
	b = appendBytes(b, frServer, f.server)
	b = appendVarint(b, frHeartbeat, f.heartbeatMs)
	return appendVarint(b, frCreditBytes, f.creditBytes)
}

// decode parses b into f, as proto.Unmarshal would.
func (f *streamFrame) decode(b []byte) error {
	*f = streamFrame{}
	return decodeFields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			switch num {
			case frKind:
				f.kind = frameKind(int32(v))
			case frSeq:
				f.seq = v
			case frCredit:
				f.credit = v
			case frInboxPartition:
				f.inboxPartition = int32(v)
			case frCode:
				f.code = int32(v)
			case frFromClient:
				f.fromClient = v != 0
			case frHeartbeat:
				f.heartbeatMs = v
			case frCreditBytes:
				f.creditBytes = v
			}
			return n, nil
		}
		if typ != protowire.BytesType {
			return protowire.ConsumeFieldValue(num, typ, b), nil
		}
		switch num {
		case frID:
			return consumeString(b, &f.id)
		case frInboxTopic:
			return consumeString(b, &f.inboxTopic)
		case frHeader:
			return consumeMetadata(b, &f.header)
		case frMessage:
			return consumeString(b, &f.message)
		case frDetails:
			v, n := protowire.ConsumeBytes(b)
			f.details = v
			return n, nil
		case frTrailer:
			return consumeMetadata(b, &f.trailer)
		case frServer:
			return consumeString(b, &f.server)
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

// appendReplyEnvelope appends the encoding of a ReplyEnvelope to b.
func appendReplyEnvelope(b []byte, id []byte, code int32, message string, details []byte, header, trailer metadata.MD) []byte {
	b = appendBytes(b, repID, id)
	b = appendVarint(b, repCode, uint64(int64(code)))
	b = appendString(b, repMessage, message)
	b = appendBytes(b, repDetails, details)
	b = appendMetadata(b, repHeader, header)
	return appendMetadata(b, repTrailer, trailer)
}

// appendString appends a proto3 string field; the empty string is omitted.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendBytes appends a proto3 string or bytes field; empty is omitted.
func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendVarint appends a proto3 integer field; zero is omitted.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMetadata appends md as repeated MetadataEntry fields numbered num,
// one per key.
func appendMetadata(b []byte, num protowire.Number, md metadata.MD) []byte {
	// Entries in key order, so that one call's envelope has one encoding
	// (docs/wire.md: the golden vectors fix the bytes).
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := md[k]
		size := 0
		if k != "" {
			size += protowire.SizeTag(mdKey) + protowire.SizeBytes(len(k))
		}
		for _, v := range vs {
			size += protowire.SizeTag(mdValues) + protowire.SizeBytes(len(v))
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendString(b, mdKey, k)
		for _, v := range vs {
			b = protowire.AppendTag(b, mdValues, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
	}
	return b
}

// decode parses b into e, as proto.Unmarshal would: unknown fields, and
// known fields of an unexpected wire type, are skipped.
func (e *requestEnvelope) decode(b []byte) error {
	*e = requestEnvelope{}
	return decodeFields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == reqMethod && typ == protowire.BytesType:
			return consumeString(b, &e.method)
		case num == reqID && typ == protowire.BytesType:
			return consumeString(b, &e.id)
		case num == reqReplyTopic && typ == protowire.BytesType:
			return consumeString(b, &e.replyTopic)
		case num == reqReplyPartition && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			e.replyPartition = int32(v)
			return n, nil
		case num == reqDeadline && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			e.deadlineUnixMs = int64(v)
			return n, nil
		case num == reqMetadata && typ == protowire.BytesType:
			return consumeMetadata(b, &e.metadata)
		case num == reqStream && typ == protowire.BytesType:
			return consumeStreamOpen(b, &e.stream)
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

// consumeStreamOpen reads a StreamOpen into *o. Like protobuf, a second
// occurrence merges into the first.
func consumeStreamOpen(b []byte, o **streamOpen) (int, error) {
	body, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return n, nil
	}
	if *o == nil {
		*o = &streamOpen{}
	}
	return n, decodeFields(body, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if typ != protowire.VarintType {
			return protowire.ConsumeFieldValue(num, typ, b), nil
		}
		v, n := protowire.ConsumeVarint(b)
		switch num {
		case openWindow:
			(*o).window = v
		case openHalfClosed:
			(*o).halfClosed = v != 0
		case openHeartbeat:
			(*o).heartbeatMs = v
		case openBytes:
			(*o).windowBytes = v
		}
		return n, nil
	})
}

// decode parses b into e, as proto.Unmarshal would.
func (e *replyEnvelope) decode(b []byte) error {
	*e = replyEnvelope{}
	return decodeFields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == repID && typ == protowire.BytesType:
			return consumeString(b, &e.id)
		case num == repCode && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			e.code = int32(v)
			return n, nil
		case num == repMessage && typ == protowire.BytesType:
			return consumeString(b, &e.message)
		case num == repDetails && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			e.details = v
			return n, nil
		case num == repHeader && typ == protowire.BytesType:
			return consumeMetadata(b, &e.header)
		case num == repTrailer && typ == protowire.BytesType:
			return consumeMetadata(b, &e.trailer)
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

// decodeFields calls field for each field of the message b. field returns
// how many bytes of the field's value it consumed, or a negative protowire
// error code.
func decodeFields(b []byte, field func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return errFieldNumber
		}
		b = b[n:]
		n, err := field(num, typ, b)
		if err != nil {
			return err
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// consumeString reads a length-delimited string field into dst, checking
// that it is UTF-8.
func consumeString(b []byte, dst *[]byte) (int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n >= 0 && !utf8.Valid(v) {
		return n, errInvalidUTF8
	}
	*dst = v
	return n, nil
}

// consumeMetadata reads one MetadataEntry into md, as metadata.MD.Append
// would: keys lower-cased, values in order, entries without a key dropped.
func consumeMetadata(b []byte, md *metadata.MD) (int, error) {
	entry, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return n, nil
	}
	var key []byte
	var values []string
	err := decodeFields(entry, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case num == mdKey && typ == protowire.BytesType:
			return consumeString(b, &key)
		case num == mdValues && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n >= 0 {
				values = append(values, string(v))
			}
			return n, nil
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
	// As metadata.MD.Append: a key without values is no entry at all.
	if err != nil || len(key) == 0 || len(values) == 0 {
		return n, err
	}
	if *md == nil {
		*md = metadata.MD{}
	}
	k := strings.ToLower(string(key))
	(*md)[k] = append((*md)[k], values...)
	return n, nil
}

// invalidMetadataKey returns the first key of md that is not UTF-8, which
// protobuf cannot carry in a string field, or "".
func invalidMetadataKey(md metadata.MD) string {
	for k := range md {
		if !utf8.ValidString(k) {
			return k
		}
	}
	return ""
}

// bufferPool holds encoding buffers. Produce copies a record's value and
// headers before it returns, so a buffer goes back to the pool right after.
// The zero value is ready to use.
type bufferPool struct{ p sync.Pool }

// maxPooledBuf is the largest buffer put back in the pool, so that a rare
// large message does not keep its memory alive.
const maxPooledBuf = 64 << 10

func (bp *bufferPool) get() *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (bp *bufferPool) put(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bp.p.Put(b)
}
