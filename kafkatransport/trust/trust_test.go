package trust

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	getProduct = "/shop.products.v1.ProductService/GetProduct"
	reserve    = "/shop.products.v1.ProductService/ReserveStock"
	adjust     = "/shop.products.v1.ProductService/AdjustStock"
	getUser    = "/shop.users.v1.UserService/GetUser"
)

var policy = Policy{
	Owners: map[string]string{"shop.users.v1": "usersvc", "shop.products.v1": "productsvc", "shop.orders.v1": "ordersvc"},
	Calls: map[string][]string{
		"gateway":  {"/shop.users.v1.UserService/*", "/shop.products.v1.ProductService/*"},
		"ordersvc": {reserve},
	},
}

// units returns a Guard for each of the shop's units, sharing one keyring.
func units(t *testing.T) (map[string]*Guard, *Keyring, map[string]*UnitKey) {
	return guards(t, policy, "gateway", "usersvc", "productsvc", "ordersvc")
}

// guards returns a Guard under p for each unit, sharing one keyring.
func guards(t *testing.T, p Policy, units ...string) (map[string]*Guard, *Keyring, map[string]*UnitKey) {
	t.Helper()
	ring, keys, err := Generate(time.Now(), units...)
	if err != nil {
		t.Fatal(err)
	}
	gs := map[string]*Guard{}
	for u, k := range keys {
		if gs[u], err = NewGuard(k, ring, p); err != nil {
			t.Fatal(err)
		}
	}
	return gs, ring, keys
}

func record(topic string, key, value []byte, hs ...kafka.Header) *kafka.Message {
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}, Key: key, Value: value, Headers: hs}
}

// clone copies m as a consumer would see it.
func clone(m *kafka.Message) *kafka.Message {
	topic := *m.TopicPartition.Topic
	c := record(topic, bytes.Clone(m.Key), bytes.Clone(m.Value))
	for _, h := range m.Headers {
		c.Headers = append(c.Headers, kafka.Header{Key: h.Key, Value: bytes.Clone(h.Value)})
	}
	return c
}

func TestSealedCalls(t *testing.T) {
	gs, _, _ := units(t)
	plain := []byte("secret request body: password=hunter2")
	req := record("shop.products.v1.ProductService", []byte("k"), bytes.Clone(plain), kafka.Header{Key: "rpc", Value: []byte("envelope")})
	if err := gs["gateway"].SealRequest(getProduct, req); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(req.Value, []byte("hunter2")) {
		t.Fatal("sealed value holds the plaintext")
	}
	got := clone(req)
	caller, err := gs["productsvc"].OpenRequest(getProduct, got)
	if err != nil || caller != "gateway" || !bytes.Equal(got.Value, plain) {
		t.Fatalf("OpenRequest = %q, %v, value %q", caller, err, got.Value)
	}

	// Every change to what the seal binds makes it fail to open.
	tampered := map[string]func(m *kafka.Message){
		"value":              func(m *kafka.Message) { m.Value[len(m.Value)-1] ^= 1 },
		"key":                func(m *kafka.Message) { m.Key = []byte("other") },
		"topic":              func(m *kafka.Message) { other := "shop.products.v1.Other"; m.TopicPartition.Topic = &other },
		"envelope header":    func(m *kafka.Message) { m.Headers[0].Value = []byte("envelopf") },
		"header added first": func(m *kafka.Message) { m.Headers = append([]kafka.Header{{Key: "x", Value: nil}}, m.Headers...) },
		"header added after": func(m *kafka.Message) {
			m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: []byte("x")})
		},
		"no seal": func(m *kafka.Message) { m.Value = []byte("plain request") },
		"claims another unit": func(m *kafka.Message) {
			setDesc(m, strings.Replace(sealDesc(m), "v1 gateway", "v1 ordersvc", 1))
		},
		"value cut": func(m *kafka.Message) { m.Value = m.Value[:5] },
		"a signature header added": func(m *kafka.Message) {
			m.Headers = append(m.Headers, kafka.Header{Key: HeaderSig, Value: []byte("v1 gateway k x")})
		},
		"seal descriptor with two spaces": func(m *kafka.Message) {
			setDesc(m, strings.Replace(sealDesc(m), "v1 ", "v1  ", 1))
		},
	}
	for name, change := range tampered {
		t.Run(name, func(t *testing.T) {
			m := clone(req)
			change(m)
			if _, err := gs["productsvc"].OpenRequest(getProduct, m); err == nil {
				t.Fatal("opened")
			}
		})
	}
	// Another method name: the seal binds it too.
	if _, err := gs["productsvc"].OpenRequest(adjust, clone(req)); err == nil {
		t.Fatal("opened as another method")
	}
	// A unit the request was not sealed for cannot open it.
	if _, err := gs["usersvc"].OpenRequest(getProduct, clone(req)); err == nil {
		t.Fatal("usersvc opened a request sealed for productsvc")
	}
	// A reply is no request, and a request no reply.
	if err := gs["gateway"].OpenReply(getProduct, clone(req)); err == nil {
		t.Fatal("a request opened as a reply")
	}

	// The reply goes back to the caller, from the unit that serves the method.
	reply := record("kgrpc.replies", nil, []byte("reply body"), kafka.Header{Key: "rpc", Value: []byte("reply envelope")})
	if err := gs["productsvc"].SealReply(getProduct, caller, reply); err != nil {
		t.Fatal(err)
	}
	m := clone(reply)
	if err := gs["gateway"].OpenReply(getProduct, m); err != nil || string(m.Value) != "reply body" {
		t.Fatalf("OpenReply = %v, value %q", err, m.Value)
	}
	if _, err := gs["gateway"].OpenRequest(getProduct, clone(reply)); err == nil {
		t.Fatal("a reply opened as a request")
	}
	// usersvc seals a "reply" to a products call: it does not serve it.
	forged := record("kgrpc.replies", nil, []byte("forged"), kafka.Header{Key: "rpc", Value: []byte("reply envelope")})
	if err := gs["usersvc"].SealReply(getProduct, "gateway", forged); err != nil {
		t.Fatal(err)
	}
	if err := gs["gateway"].OpenReply(getProduct, forged); err == nil || !strings.Contains(err.Error(), "does not serve it") {
		t.Fatalf("OpenReply of a reply from usersvc = %v", err)
	}
}

func TestCallPolicy(t *testing.T) {
	gs, _, _ := units(t)
	tests := []struct {
		caller, method string
		allowed        bool
	}{
		{"gateway", getProduct, true},
		{"gateway", getUser, true},
		{"ordersvc", reserve, true},
		{"ordersvc", adjust, false},
		{"ordersvc", getUser, false},
		{"usersvc", getProduct, false},
	}
	for _, tc := range tests {
		t.Run(tc.caller+tc.method, func(t *testing.T) {
			m := record("t", nil, []byte("x"))
			if err := gs[tc.caller].SealRequest(tc.method, m); err != nil {
				t.Fatal(err)
			}
			owner, _ := policy.owner(serviceOf(tc.method))
			caller, err := gs[owner].OpenRequest(tc.method, m)
			if caller != tc.caller {
				t.Fatalf("caller %q, want %q (err %v)", caller, tc.caller, err)
			}
			if tc.allowed != (err == nil) || (!tc.allowed && status.Code(err) != codes.PermissionDenied) {
				t.Fatalf("OpenRequest = %v, want allowed %v (else PermissionDenied)", err, tc.allowed)
			}
		})
	}
	if err := gs["gateway"].SealRequest("/shop.unknown.v1.S/M", record("t", nil, nil)); err == nil {
		t.Fatal("sealed a request for a service no unit serves")
	}
}

func TestSignedEvents(t *testing.T) {
	gs, _, _ := units(t)
	const name = "shop.orders.v1.OrderStatusChanged"
	ev := record("shop.orders.v1.OrderStatusChanged", []byte("o_1"), []byte("cancelled"), kafka.Header{Key: "ev-type", Value: []byte(name)})
	if err := gs["ordersvc"].SealEvent(name, ev); err != nil {
		t.Fatal(err)
	}
	if p, err := gs["productsvc"].OpenEvent(name, clone(ev)); err != nil || p != "ordersvc" {
		t.Fatalf("OpenEvent = %q, %v", p, err)
	}
	changed := clone(ev)
	changed.Value = []byte("confirmed")
	if _, err := gs["productsvc"].OpenEvent(name, changed); err == nil {
		t.Fatal("opened a changed event")
	}
	// productsvc signs an orders event with its own key: not the owner.
	own := record("shop.orders.v1.OrderStatusChanged", []byte("o_1"), []byte("cancelled"))
	if err := gs["productsvc"].SealEvent(name, own); err != nil {
		t.Fatal(err)
	}
	if _, err := gs["usersvc"].OpenEvent(name, own); err == nil || !strings.Contains(err.Error(), "only its owner") {
		t.Fatalf("OpenEvent of a non-owner's event = %v", err)
	}
	// The same, claiming to be ordersvc.
	claim := clone(own)
	last := &claim.Headers[len(claim.Headers)-1]
	last.Value = bytes.Replace(last.Value, []byte("v1 productsvc"), []byte("v1 ordersvc"), 1)
	if _, err := gs["usersvc"].OpenEvent(name, claim); err == nil {
		t.Fatal("opened an event claiming another unit")
	}
	if _, err := gs["usersvc"].OpenEvent(name, record("t", nil, []byte("unsigned"))); err == nil {
		t.Fatal("opened an unsigned event")
	}
	// Headers spliced in before the signature: a traceparent posing as
	// the publisher's.
	spliced := clone(ev)
	sig := spliced.Headers[len(spliced.Headers)-1]
	spliced.Headers = append(spliced.Headers[:len(spliced.Headers)-1], kafka.Header{Key: HeaderSig, Value: []byte("x")},
		kafka.Header{Key: "traceparent", Value: []byte("00-forged")}, sig)
	if _, err := gs["productsvc"].OpenEvent(name, spliced); err == nil {
		t.Fatal("opened an event with headers spliced in")
	}
}

// A rotated unit seals with its new key and still opens what was sealed to
// its old one; once the old key is retired, nothing sealed to it opens.
func TestRotation(t *testing.T) {
	_, ring, keys := units(t)
	p := keys["productsvc"]
	next, err := GenerateKey("productsvc", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	p.Keys = append([]Key{next}, p.Keys...)
	ring.Set(p)
	gw, _ := NewGuard(keys["gateway"], ring, policy)
	ps, err := NewGuard(p, ring, policy)
	if err != nil {
		t.Fatal(err)
	}
	req := record("t", nil, []byte("q"))
	if err := gw.SealRequest(getProduct, req); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(sealDesc(req), p.Keys[1].ID) {
		t.Fatalf("sealed to %q, want productsvc's oldest key %s", sealDesc(req), p.Keys[1].ID)
	}
	if _, err := ps.OpenRequest(getProduct, clone(req)); err != nil {
		t.Fatal(err)
	}
	reply := record("r", nil, []byte("a"))
	if err := ps.SealReply(getProduct, "gateway", reply); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sealDesc(reply), "v1 productsvc "+next.ID) {
		t.Fatalf("reply sealed with %q, want the new key", sealDesc(reply))
	}
	if err := gw.OpenReply(getProduct, reply); err != nil {
		t.Fatal(err)
	}
	p.Keys = p.Keys[:1] // retire the old key
	ring.Set(p)
	retired, _ := NewGuard(p, ring, policy)
	if _, err := retired.OpenRequest(getProduct, clone(req)); err == nil {
		t.Fatal("opened a request sealed to a retired key")
	}
	// A guard whose keyring lacks its own current key is refused.
	other, _, _ := Generate(time.Now(), "productsvc")
	if _, err := NewGuard(p, other, policy); err == nil {
		t.Fatal("NewGuard with a keyring without the unit's key")
	}
}

// sealDesc returns the seal descriptor at the start of a sealed value.
func sealDesc(m *kafka.Message) string {
	n, k := binary.Uvarint(m.Value)
	return string(m.Value[k : k+int(n)])
}

// setDesc replaces the seal descriptor of a sealed value.
func setDesc(m *kafka.Message, desc string) {
	n, k := binary.Uvarint(m.Value)
	rest := m.Value[k+int(n):]
	m.Value = append(append(binary.AppendUvarint(nil, uint64(len(desc))), desc...), rest...)
}

// Key files and keyrings survive a round trip; a private key others may
// read, a malformed keyring and a key of an invalid unit are refused.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ring, keys, err := Generate(time.Now(), "gateway", "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "usersvc.key")
	if err := keys["usersvc"].Save(path); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUnitKey(path)
	if err != nil || u.Unit != "usersvc" || u.Current().ID != keys["usersvc"].Current().ID || !u.Current().sign.Equal(keys["usersvc"].Current().sign) {
		t.Fatalf("LoadUnitKey = %+v, %v", u, err)
	}
	ringPath := filepath.Join(dir, "keyring.json")
	if err := ring.Save(ringPath); err != nil {
		t.Fatal(err)
	}
	back, err := LoadKeyring(ringPath)
	if err != nil || len(back.Units()) != 2 || back.Keys("usersvc")[0].ID != keys["usersvc"].Current().ID {
		t.Fatalf("LoadKeyring = %v, %v", back, err)
	}
	if _, err := NewGuard(u, back, policy); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o440); err != nil { // a Kubernetes Secret with fsGroup
		t.Fatal(err)
	}
	if _, err := LoadUnitKey(path); err != nil {
		t.Fatalf("group-readable key: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadUnitKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	for name, body := range map[string]string{
		"not JSON":         "{",
		"no unit":          `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAA"}]}`,
		"half a key":       strings.Replace(string(mustMarshal(t, ring)), `"X25519"`, `"Ed25519"`, -1),
		"bad unit name":    strings.Replace(string(mustMarshal(t, ring)), `"kgrpc_unit": "gateway"`, `"kgrpc_unit": "Gate Way"`, -1),
		"unknown curve ":   strings.Replace(string(mustMarshal(t, ring)), `"X25519"`, `"P-256"`, 1),
		"kid with a space": strings.Replace(string(mustMarshal(t, ring)), `"kid": "gateway-`, `"kid": "gate way-`, -1),
		"a half twice":     strings.Replace(string(mustMarshal(t, ring)), `"X25519"`, `"Ed25519"`, 1),
	} {
		if _, err := ParseKeyring([]byte(body)); err == nil {
			t.Errorf("%s: keyring accepted", name)
		}
	}
	// A keyring others may write is refused: whoever can add a key to it
	// acts as any unit.
	if err := os.Chmod(ringPath, 0o664); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(ringPath); err == nil {
		t.Fatal("group-writable keyring accepted")
	}
	// The unit's secret survives a rotation (a new key, saved again).
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ = LoadUnitKey(path)
	before := u.Secret("fingerprint")
	next, _ := GenerateKey("usersvc", time.Now().Add(time.Hour))
	u.Keys = append([]Key{next}, u.Keys...)
	if err := u.Save(path); err != nil {
		t.Fatal(err)
	}
	u, _ = LoadUnitKey(path)
	u.Keys = u.Keys[:1] // and a retirement
	if !bytes.Equal(u.Secret("fingerprint"), before) || bytes.Equal(u.Secret("other"), before) {
		t.Fatal("the unit's secret changed with its keys, or is the same for two labels")
	}
	jwks, err := ring.JWKS("usersvc")
	if err != nil || !strings.Contains(string(jwks), `"alg":"EdDSA"`) || strings.Contains(string(jwks), "X25519") || strings.Contains(string(jwks), "kgrpc_") {
		t.Fatalf("JWKS = %s, %v", jwks, err)
	}
}

func mustMarshal(t *testing.T, r *Keyring) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkSeal measures what a Guard adds to one call: sealing and opening
// a request and its reply of a typical size.
func BenchmarkSeal(b *testing.B) {
	ring, keys, _ := Generate(time.Now(), "gateway", "productsvc")
	gw, _ := NewGuard(keys["gateway"], ring, policy)
	ps, _ := NewGuard(keys["productsvc"], ring, policy)
	body := bytes.Repeat([]byte("x"), 200)
	env := kafka.Header{Key: "rpc", Value: bytes.Repeat([]byte("e"), 120)}
	b.ReportAllocs()
	for b.Loop() {
		req := record("shop.products.v1.ProductService", nil, body, env)
		_ = gw.SealRequest(getProduct, req)
		_, _ = ps.OpenRequest(getProduct, req)
		rep := record("kgrpc.replies", nil, body, env)
		_ = ps.SealReply(getProduct, "gateway", rep)
		_ = gw.OpenReply(getProduct, rep)
	}
}

// A PerUnit service's request is sealed for the unit its topic names, which
// alone opens it; its reply opens from any unit of the keyring.
func TestPerUnitService(t *testing.T) {
	const check = "/grpc.health.v1.Health/Check"
	p := Policy{Owners: policy.Owners, PerUnit: []string{"grpc.health.v1.Health"},
		Calls: map[string][]string{"gateway": {"/grpc.health.v1.Health/*"}}}
	gs, _, _ := guards(t, p, "gateway", "usersvc", "productsvc")
	tests := []struct {
		name, caller, topic string
		sealErr             bool
		opener              string // the unit that opens it; the others cannot
		code                codes.Code
	}{
		{"for the unit the topic names", "gateway", "t-x-grpc.health.v1.Health.productsvc", false, "productsvc", codes.OK},
		{"for another unit", "gateway", "grpc.health.v1.Health.usersvc", false, "usersvc", codes.OK},
		{"a caller the policy does not allow", "usersvc", "grpc.health.v1.Health.productsvc", false, "productsvc", codes.PermissionDenied},
		{"a topic naming no unit", "gateway", "grpc.health.v1.Health", true, "", codes.OK},
		{"a topic ending in a dot", "gateway", "grpc.health.v1.Health.", true, "", codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := record(tc.topic, nil, []byte("check"))
			err := gs[tc.caller].SealRequest(check, req)
			if tc.sealErr {
				if err == nil {
					t.Fatal("sealed a request for a unit the keyring does not hold")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for u, g := range gs {
				caller, err := g.OpenRequest(check, clone(req))
				switch {
				case u != tc.opener && caller != "":
					t.Errorf("%s opened a request sealed for %s", u, tc.opener)
				case u == tc.opener && (caller != tc.caller || status.Code(err) != tc.code):
					t.Errorf("%s: OpenRequest = %q, %v; want %q, code %v", u, caller, err, tc.caller, tc.code)
				}
			}
		})
	}
	for _, from := range []string{"productsvc", "usersvc"} {
		reply := record("kgrpc.replies", nil, []byte("SERVING"))
		if err := gs[from].SealReply(check, "gateway", reply); err != nil {
			t.Fatal(err)
		}
		if err := gs["gateway"].OpenReply(check, reply); err != nil || string(reply.Value) != "SERVING" {
			t.Errorf("reply from %s: OpenReply = %v, value %q", from, err, reply.Value)
		}
	}
}
