package kafkatransport

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
)

// The hand-written envelope codec (wire.go) must agree with the generated
// code of envelope.proto in both directions: what it encodes, protobuf
// decodes to the same fields, and what protobuf encodes, it decodes to the
// same fields.

var wireMetadata = []metadata.MD{
	nil,
	{"authorization": {"Bearer x.y.z"}},
	{"a": {"1", "2"}, "trace-bin": {"\x00\xff\x10"}, "empty": {""}, "none": {}},
}

func TestRequestEnvelopeAgreesWithProtobuf(t *testing.T) {
	for i, c := range []struct {
		method, id, topic string
		partition         int32
		deadline          int64
	}{
		{"/pkg.v1.Svc/Method", "inst-1a2b3c4d-z", "kgrpc.replies", 7, 1_764_000_000_123},
		{"", "", "", 0, 0},
		{"/ünï.cödé/Μέθοδος", "id", "t", math.MaxInt32, math.MaxInt64},
		{"/a/b", "x", "y", -1, -5},
	} {
		for j, md := range wireMetadata {
			t.Run(fmt.Sprintf("%d/%d", i, j), func(t *testing.T) {
				b := appendRequestEnvelope(nil, c.method, []byte(c.id), c.topic, c.partition, c.deadline, md)
				var pb kafkav1.RequestEnvelope
				if err := proto.Unmarshal(b, &pb); err != nil {
					t.Fatalf("protobuf cannot decode our encoding: %v", err)
				}
				if pb.GetMethod() != c.method || pb.GetId() != c.id || pb.GetReplyTopic() != c.topic ||
					pb.GetReplyPartition() != c.partition || pb.GetDeadlineUnixMs() != c.deadline {
					t.Errorf("protobuf decoded %v", &pb)
				}
				assertMD(t, "protobuf's metadata", entriesToMD(pb.GetMetadata()), md)

				if md == nil {
					want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(b, want) {
						t.Errorf("encoding\n got %x\nwant %x", b, want)
					}
				}

				pbBytes, err := proto.Marshal(&pb)
				if err != nil {
					t.Fatal(err)
				}
				var e requestEnvelope
				if err := e.decode(pbBytes); err != nil {
					t.Fatalf("decode protobuf's encoding: %v", err)
				}
				if string(e.method) != c.method || string(e.id) != c.id || string(e.replyTopic) != c.topic ||
					e.replyPartition != c.partition || e.deadlineUnixMs != c.deadline {
					t.Errorf("decoded %+v", e)
				}
				assertMD(t, "decoded metadata", e.metadata, md)
			})
		}
	}
}

func TestReplyEnvelopeAgreesWithProtobuf(t *testing.T) {
	for i, c := range []struct {
		id      string
		code    int32
		message string
		details []byte
	}{
		{"inst-1a2b3c4d-z", 0, "", nil},
		{"x", 9, "not enough stock for p_1 (wanted 3, have 1)", []byte{0x08, 0x09, 0x12, 0x01, 'x'}},
		{"", -1, "ü", []byte{0}},
	} {
		for j, md := range wireMetadata {
			t.Run(fmt.Sprintf("%d/%d", i, j), func(t *testing.T) {
				trailer := metadata.MD{"t": {"1"}}
				b := appendReplyEnvelope(nil, []byte(c.id), c.code, c.message, c.details, md, trailer)
				var pb kafkav1.ReplyEnvelope
				if err := proto.Unmarshal(b, &pb); err != nil {
					t.Fatalf("protobuf cannot decode our encoding: %v", err)
				}
				if pb.GetId() != c.id || pb.GetCode() != c.code || pb.GetMessage() != c.message || !bytes.Equal(pb.GetStatusDetails(), c.details) {
					t.Errorf("protobuf decoded %v", &pb)
				}
				assertMD(t, "protobuf's header", entriesToMD(pb.GetHeader()), md)
				assertMD(t, "protobuf's trailer", entriesToMD(pb.GetTrailer()), trailer)

				pbBytes, err := proto.Marshal(&pb)
				if err != nil {
					t.Fatal(err)
				}
				var e replyEnvelope
				if err := e.decode(pbBytes); err != nil {
					t.Fatalf("decode protobuf's encoding: %v", err)
				}
				if string(e.id) != c.id || e.code != c.code || string(e.message) != c.message || !bytes.Equal(e.details, c.details) {
					t.Errorf("decoded %+v", e)
				}
				assertMD(t, "decoded header", e.header, md)
				assertMD(t, "decoded trailer", e.trailer, trailer)
			})
		}
	}
}

// TestEnvelopeDecodeSkipsAndRefuses: unknown fields and known fields of
// another wire type are skipped, as protobuf does; truncated input and
// strings that are not UTF-8 are refused, as protobuf refuses them.
func TestEnvelopeDecodeSkipsAndRefuses(t *testing.T) {
	good := appendRequestEnvelope(nil, "/a/b", []byte("id-1"), "replies", 3, 42, nil)

	// Field 99 (varint), field 1 as a fixed32, field 98 as a group.
	var extra []byte
	extra = protowire.AppendTag(extra, 99, protowire.VarintType)
	extra = protowire.AppendVarint(extra, 12345)
	extra = protowire.AppendTag(extra, reqMethod, protowire.Fixed32Type)
	extra = protowire.AppendFixed32(extra, 7)
	extra = protowire.AppendTag(extra, 98, protowire.StartGroupType)
	extra = protowire.AppendTag(extra, 1, protowire.VarintType)
	extra = protowire.AppendVarint(extra, 1)
	extra = protowire.AppendTag(extra, 98, protowire.EndGroupType)
	withExtra := append(append([]byte{}, extra...), good...)

	var e requestEnvelope
	if err := e.decode(withExtra); err != nil {
		t.Fatalf("decode with unknown fields: %v", err)
	}
	if string(e.method) != "/a/b" || string(e.id) != "id-1" || string(e.replyTopic) != "replies" || e.replyPartition != 3 || e.deadlineUnixMs != 42 {
		t.Errorf("decoded %+v", e)
	}
	var pb kafkav1.RequestEnvelope
	if err := proto.Unmarshal(withExtra, &pb); err != nil || pb.GetMethod() != "/a/b" {
		t.Errorf("protobuf: %v, method %q", err, pb.GetMethod())
	}

	// Field 1 is a string in both envelopes.
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{0xff, 0xfe})
	for name, b := range map[string][]byte{
		"truncated":    good[:len(good)-1],
		"bad length":   {0x0a, 0x7f, 'x'},
		"bad tag":      {0x80},
		"field zero":   {0x00, 0x01},
		"invalid utf8": badUTF8,
	} {
		if err := e.decode(b); err == nil {
			t.Errorf("%s: decode succeeded", name)
		}
		if err := proto.Unmarshal(b, &pb); err == nil {
			t.Errorf("%s: protobuf accepts it, so the transport should too", name)
		}
		var r replyEnvelope
		if err := r.decode(b); err == nil {
			t.Errorf("%s: reply decode succeeded", name)
		}
	}
}

// FuzzRequestEnvelope: on any input the decoder neither panics nor
// disagrees with protobuf about whether the input is valid or what it says.
func FuzzRequestEnvelope(f *testing.F) {
	f.Add(appendRequestEnvelope(nil, "/a/b", []byte("id"), "r", 2, 99, metadata.MD{"k": {"v"}}))
	f.Add([]byte{})
	f.Add([]byte{0x32, 0x03, 0x0a, 0x01, 'K'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e requestEnvelope
		err := e.decode(b)
		var pb kafkav1.RequestEnvelope
		perr := proto.Unmarshal(b, &pb)
		if (err == nil) != (perr == nil) {
			t.Fatalf("decode error %v, protobuf error %v", err, perr)
		}
		if err != nil {
			return
		}
		if string(e.method) != pb.GetMethod() || string(e.id) != pb.GetId() || string(e.replyTopic) != pb.GetReplyTopic() ||
			e.replyPartition != pb.GetReplyPartition() || e.deadlineUnixMs != pb.GetDeadlineUnixMs() {
			t.Fatalf("decoded %+v, protobuf %v", e, &pb)
		}
		assertMD(t, "metadata", e.metadata, entriesToMD(pb.GetMetadata()))
	})
}

// entriesToMD is how metadata.MD.Append reads MetadataEntry values: keys
// lower-cased, values in order, entries without a key or without values
// dropped.
func entriesToMD(es []*kafkav1.MetadataEntry) metadata.MD {
	var md metadata.MD
	for _, e := range es {
		if e.GetKey() == "" || len(e.GetValues()) == 0 {
			continue
		}
		if md == nil {
			md = metadata.MD{}
		}
		k := strings.ToLower(e.GetKey())
		for _, v := range e.GetValues() {
			md[k] = append(md[k], string(v))
		}
	}
	return md
}

// assertMD compares decoded metadata with what was sent: a key sent without
// values must not appear at all, and nil equals empty.
func assertMD(t *testing.T, what string, got, want metadata.MD) {
	t.Helper()
	for k, vs := range got {
		if len(vs) == 0 {
			t.Errorf("%s has key %q without values: %v", what, k, got)
		}
	}
	norm := func(md metadata.MD) map[string]string {
		out := map[string]string{}
		for k, vs := range md {
			if len(vs) > 0 {
				out[k] = strings.Join(vs, "\x00")
			}
		}
		return out
	}
	g, w := norm(got), norm(want)
	if len(g) != len(w) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	for k, v := range w {
		if g[k] != v {
			t.Errorf("%s = %v, want %v", what, got, want)
			return
		}
	}
}

func TestStreamOpenAgreesWithProtobuf(t *testing.T) {
	for _, o := range []streamOpen{{}, {window: 64}, {window: math.MaxUint64, halfClosed: true, heartbeatMs: 2000, windowBytes: 256 << 10}, {halfClosed: true}} {
		b := appendStreamOpen(appendRequestEnvelope(nil, "/a/B", []byte("id"), "r", 1, 2, nil), o)
		var pb kafkav1.RequestEnvelope
		if err := proto.Unmarshal(b, &pb); err != nil {
			t.Fatalf("protobuf cannot decode our encoding: %v", err)
		}
		if pb.GetStream() == nil || pb.GetStream().GetWindow() != o.window || pb.GetStream().GetHalfClosed() != o.halfClosed || pb.GetStream().GetHeartbeatMs() != o.heartbeatMs || pb.GetStream().GetWindowBytes() != o.windowBytes {
			t.Errorf("%+v: protobuf decoded %v", o, pb.GetStream())
		}
		pbBytes, err := proto.Marshal(&pb)
		if err != nil {
			t.Fatal(err)
		}
		var e requestEnvelope
		if err := e.decode(pbBytes); err != nil {
			t.Fatalf("decode protobuf's encoding: %v", err)
		}
		if e.stream == nil || *e.stream != o {
			t.Errorf("%+v: decoded %+v", o, e.stream)
		}
	}
	var e requestEnvelope
	if err := e.decode(appendRequestEnvelope(nil, "/a/B", []byte("id"), "r", 1, 2, nil)); err != nil || e.stream != nil {
		t.Errorf("an envelope without StreamOpen decoded as a stream: %+v, %v", e.stream, err)
	}
}

func TestStreamFrameAgreesWithProtobuf(t *testing.T) {
	for i, f := range []streamFrame{
		{},
		{id: []byte("inst-1-z"), kind: frameAccept, credit: 64, creditBytes: math.MaxUint64, inboxTopic: []byte("kgrpc.replies"), inboxPartition: 15, server: []byte("srv-1a2b"), heartbeatMs: 2000},
		{id: []byte("x"), kind: frameMessage, seq: math.MaxUint64, fromClient: true},
		{id: []byte("x"), kind: frameEnd, seq: 9, code: 9, message: []byte("préconditions"), details: []byte{1, 2, 3},
			header: metadata.MD{"h": {"1"}}, trailer: metadata.MD{"t-bin": {"\x00\xff"}}},
		{kind: frameKind(99), inboxPartition: -1, code: -3},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			b := appendStreamFrame(nil, &f)
			var pb kafkav1.StreamFrame
			if err := proto.Unmarshal(b, &pb); err != nil {
				t.Fatalf("protobuf cannot decode our encoding: %v", err)
			}
			if pb.GetId() != string(f.id) || int32(pb.GetKind()) != int32(f.kind) || pb.GetSeq() != f.seq || pb.GetCredit() != f.credit ||
				pb.GetInboxTopic() != string(f.inboxTopic) || pb.GetInboxPartition() != f.inboxPartition || pb.GetCode() != f.code ||
				pb.GetMessage() != string(f.message) || !bytes.Equal(pb.GetStatusDetails(), f.details) || pb.GetFromClient() != f.fromClient ||
				pb.GetServer() != string(f.server) || pb.GetHeartbeatMs() != f.heartbeatMs || pb.GetCreditBytes() != f.creditBytes {
				t.Errorf("protobuf decoded %v", &pb)
			}
			assertMD(t, "protobuf's header", entriesToMD(pb.GetHeader()), f.header)
			assertMD(t, "protobuf's trailer", entriesToMD(pb.GetTrailer()), f.trailer)
			pbBytes, err := proto.Marshal(&pb)
			if err != nil {
				t.Fatal(err)
			}
			var got streamFrame
			if err := got.decode(pbBytes); err != nil {
				t.Fatalf("decode protobuf's encoding: %v", err)
			}
			if string(got.id) != string(f.id) || got.kind != f.kind || got.seq != f.seq || got.credit != f.credit ||
				string(got.inboxTopic) != string(f.inboxTopic) || got.inboxPartition != f.inboxPartition || got.code != f.code ||
				string(got.message) != string(f.message) || !bytes.Equal(got.details, f.details) || got.fromClient != f.fromClient ||
				string(got.server) != string(f.server) || got.heartbeatMs != f.heartbeatMs || got.creditBytes != f.creditBytes {
				t.Errorf("decoded %+v", got)
			}
			assertMD(t, "decoded header", got.header, f.header)
			assertMD(t, "decoded trailer", got.trailer, f.trailer)
		})
	}
	var f streamFrame
	if err := f.decode([]byte{0x0a, 0x02, 0xff, 0xfe}); err == nil {
		t.Error("a frame id that is not UTF-8 decoded")
	}
}
