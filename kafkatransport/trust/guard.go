package trust

import (
	"bytes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"golang.org/x/crypto/chacha20poly1305"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
)

// HeaderSig is the header a Guard adds to every event record, last:
// "v1 <producing unit> <key id> <signature, base64url>". A call record
// carries its seal in its value instead (see the package documentation):
// a header more costs a call a few per cent of its throughput in
// confluent-kafka-go.
const HeaderSig = "kgrpc-sig"

// maxSealDesc bounds the seal descriptor of a sealed value.
const maxSealDesc = 256

// Policy says which unit serves which protobuf package and which methods
// each unit may call.
type Policy struct {
	// Owners maps a protobuf package ("shop.users.v1") to the unit that
	// serves its services and is the only producer of its events.
	Owners map[string]string
	// Calls maps a unit to the methods it may call: full method names
	// ("/shop.products.v1.ProductService/ReserveStock") or a service's
	// every method ("/shop.products.v1.ProductService/*").
	Calls map[string][]string
	// PerUnit lists services (full names, "grpc.health.v1.Health") that
	// every unit serves for itself, each on a request topic whose name
	// ends with "." and the unit's name (kafkatransport.HealthSpec): a
	// request to one is sealed for the unit its topic names, and the
	// reply opens from any unit of the keyring, for a reply does not name
	// the topic of its request.
	PerUnit []string
}

// owner returns the unit that owns the package of name, a service or
// message full name ("shop.users.v1.UserService").
func (p Policy) owner(name string) (string, bool) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", false
	}
	u, ok := p.Owners[name[:i]]
	return u, ok
}

// server returns the unit that serves a request of method on topic: the
// owner of its package, or for a PerUnit service the unit that ends the
// topic's name.
func (p Policy) server(method, topic string) (string, bool) {
	svc := serviceOf(method)
	if !slices.Contains(p.PerUnit, svc) {
		return p.owner(svc)
	}
	i := strings.LastIndexByte(topic, '.')
	if i < 0 || i == len(topic)-1 {
		return "", false
	}
	return topic[i+1:], true
}

// mayCall reports whether unit may call method.
func (p Policy) mayCall(unit, method string) bool {
	for _, m := range p.Calls[unit] {
		if m == method {
			return true
		}
		if svc, ok := strings.CutSuffix(m, "/*"); ok && strings.HasPrefix(method, svc+"/") && !strings.Contains(method[len(svc)+1:], "/") {
			return true
		}
	}
	return false
}

// Guard is the kafkatransport.Guard of one unit: it seals calls with
// XChaCha20-Poly1305 under a key the two units agree by X25519, and signs
// events with Ed25519 (see the package documentation).
type Guard struct {
	self   *UnitKey
	ring   *Keyring
	policy Policy

	mu sync.RWMutex
	// sealTo caches the pairs this unit seals with, by recipient unit;
	// openFrom those it opens with, by seal descriptor (only canonical
	// descriptors naming keys of the keyring get there, so it holds at
	// most a pair per two keys). A Guard's keys never change, so neither goes
	// stale.
	sealTo   map[string]*pair
	openFrom map[string]*pair

	// bound holds *[]byte buffers for the bytes a seal or signature binds,
	// which no cipher keeps: one per call would be garbage per record.
	bound sync.Pool
}

// boundBuf returns an empty buffer for boundBytes, to give back with
// putBound.
func (g *Guard) boundBuf() *[]byte {
	if b, ok := g.bound.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// putBound gives b back unless it grew beyond what records usually need.
func (g *Guard) putBound(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		g.bound.Put(b)
	}
}

// pair is what sealing between two keys needs: the producing unit, the
// seal descriptor and the cipher.
type pair struct {
	unit   string
	header []byte
	aead   cipher.AEAD
}

var _ kafkatransport.Guard = (*Guard)(nil)

// NewGuard returns the Guard of the unit whose keys self holds, checking
// the others with ring's keys under policy. The keyring must hold self's
// current key, which every other unit checks it by.
func NewGuard(self *UnitKey, ring *Keyring, policy Policy) (*Guard, error) {
	if self == nil || len(self.Keys) == 0 || ring == nil {
		return nil, errors.New("trust: NewGuard: a unit key and a keyring are required")
	}
	for i, k := range self.Keys {
		pk, ok := ring.Key(k.ID)
		if ok && pk.Unit == self.Unit && pk.Verify.Equal(k.sign.Public()) && pk.DH.Equal(k.dh.PublicKey()) {
			continue
		}
		if i == 0 || ok { // the current key missing, or any key different
			return nil, fmt.Errorf("trust: the keyring does not hold unit %s's key %s as its key file has it: add it (kgrpc-keys) and give every unit the new keyring", self.Unit, k.ID)
		}
	}
	return &Guard{self: self, ring: ring, policy: policy, sealTo: map[string]*pair{}, openFrom: map[string]*pair{}}, nil
}

// Unit returns the name of the guard's unit.
func (g *Guard) Unit() string { return g.self.Unit }

// Record kinds, bound into what is sealed or signed so that a record of
// one kind cannot pass for another.
const (
	kindRequest = "request"
	kindReply   = "reply"
	kindEvent   = "event"
)

// SealRequest implements kafkatransport.Guard.
func (g *Guard) SealRequest(method string, m *kafka.Message) error {
	var topic string
	if m.TopicPartition.Topic != nil {
		topic = *m.TopicPartition.Topic
	}
	to, ok := g.policy.server(method, topic)
	if !ok {
		return fmt.Errorf("trust: no unit serves %s on topic %s (Policy.Owners, Policy.PerUnit)", method, topic)
	}
	return g.seal(kindRequest, method, to, m)
}

// SealStreamFrame implements kafkatransport.Guard: the frame is sealed for
// the unit that serves method on openTopic, and bound to the frame's own
// topic (the server's inbox), which OpenRequest binds on the other side.
func (g *Guard) SealStreamFrame(method, openTopic string, m *kafka.Message) error {
	to, ok := g.policy.server(method, openTopic)
	if !ok {
		return fmt.Errorf("trust: no unit serves %s on topic %s (Policy.Owners, Policy.PerUnit)", method, openTopic)
	}
	return g.seal(kindRequest, method, to, m)
}

// OpenRequest implements kafkatransport.Guard.
func (g *Guard) OpenRequest(method string, m *kafka.Message) (string, error) {
	caller, err := g.open(kindRequest, method, m)
	if err != nil {
		return "", err
	}
	if !g.policy.mayCall(caller, method) {
		return caller, status.Errorf(codes.PermissionDenied, "unit %s may not call %s", caller, method)
	}
	return caller, nil
}

// SealReply implements kafkatransport.Guard.
func (g *Guard) SealReply(method, caller string, m *kafka.Message) error {
	return g.seal(kindReply, method, caller, m)
}

// OpenReply implements kafkatransport.Guard.
func (g *Guard) OpenReply(method string, m *kafka.Message) error {
	producer, err := g.open(kindReply, method, m)
	if err != nil {
		return err
	}
	if slices.Contains(g.policy.PerUnit, serviceOf(method)) {
		return nil // open() checked that the producer's key is the keyring's
	}
	if want, _ := g.policy.owner(serviceOf(method)); producer != want {
		return fmt.Errorf("reply to %s produced by unit %s, which does not serve it", method, producer)
	}
	return nil
}

// seal encrypts m's value for unit to and binds its topic, key and headers.
func (g *Guard) seal(kind, name, to string, m *kafka.Message) error {
	p, err := g.sealPair(to)
	if err != nil {
		return err
	}
	buf := g.boundBuf()
	defer g.putBound(buf)
	*buf = appendField(boundBytes(*buf, kind, name, m, m.Headers, len(p.header)), p.header)
	ad := *buf
	n := p.aead.NonceSize()
	out := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen16+len(p.header)+n+len(m.Value)+p.aead.Overhead()), uint64(len(p.header)))
	out = append(out, p.header...)
	nonce := out[len(out) : len(out)+n]
	_, _ = rand.Read(nonce)
	m.Value = p.aead.Seal(out[:len(out)+n], nonce, m.Value, ad)
	return nil
}

// sealPair returns the pair this unit seals with for unit to: from its
// current key to the oldest key of to in the keyring.
func (g *Guard) sealPair(to string) (*pair, error) {
	g.mu.RLock()
	p, ok := g.sealTo[to]
	g.mu.RUnlock()
	if ok {
		return p, nil
	}
	peer, ok := g.ring.oldest(to)
	if !ok {
		return nil, fmt.Errorf("trust: the keyring has no key of unit %s", to)
	}
	from := g.self.Current()
	a, err := newAEAD(from.ID, peer.ID, from, peer)
	if err != nil {
		return nil, err
	}
	p = &pair{unit: g.self.Unit, header: []byte("v1 " + g.self.Unit + " " + from.ID + " " + peer.ID), aead: a}
	g.mu.Lock()
	g.sealTo[to] = p
	g.mu.Unlock()
	return p, nil
}

// open checks and decrypts a sealed record and returns its producing unit.
func (g *Guard) open(kind, name string, m *kafka.Message) (string, error) {
	size, k := binary.Uvarint(m.Value)
	if k <= 0 || size == 0 || size > maxSealDesc || uint64(len(m.Value)-k) < size {
		return "", errors.New("not a sealed value")
	}
	desc, rest := m.Value[k:k+int(size)], m.Value[k+int(size):]
	p, err := g.openPair(desc)
	if err != nil {
		return "", err
	}
	n := p.aead.NonceSize()
	if len(rest) < n {
		return "", errors.New("sealed value too short")
	}
	// Into a new buffer: a failed Open may overwrite its destination, and
	// a record that does not open is dead-lettered as it came.
	buf := g.boundBuf()
	defer g.putBound(buf)
	*buf = appendField(boundBytes(*buf, kind, name, m, m.Headers, len(desc)), desc)
	plain, err := p.aead.Open(nil, rest[:n], rest[n:], *buf)
	if err != nil {
		return "", fmt.Errorf("%s from unit %s does not open: forged or changed", kind, p.unit)
	}
	m.Value = plain
	return p.unit, nil
}

// openPair returns the pair a seal descriptor names, checking that its
// producer's key belongs to the unit it names and that this unit holds the
// recipient's key.
func (g *Guard) openPair(header []byte) (*pair, error) {
	g.mu.RLock()
	p, ok := g.openFrom[string(header)]
	g.mu.RUnlock()
	if ok {
		return p, nil
	}
	f, err := parseHeader("seal", header)
	if err != nil {
		return nil, err
	}
	unit, fromID, toID := f[0], f[1], f[2]
	peer, ok := g.ring.Key(fromID)
	if !ok || peer.Unit != unit {
		return nil, fmt.Errorf("unknown key %s of unit %s", fromID, unit)
	}
	mine, ok := g.self.key(toID)
	if !ok {
		return nil, fmt.Errorf("sealed to key %s, which unit %s does not hold", toID, g.self.Unit)
	}
	a, err := newAEAD(fromID, toID, mine, peer)
	if err != nil {
		return nil, err
	}
	p = &pair{unit: unit, header: bytes.Clone(header), aead: a}
	g.mu.Lock()
	g.openFrom[string(header)] = p
	g.mu.Unlock()
	return p, nil
}

// newAEAD returns the cipher that seals records from key fromID to key
// toID, mine being this unit's key of the two and peer the other unit's:
// XChaCha20-Poly1305 (random 24-byte nonces, safe for any number of records
// under one key) under HKDF-SHA256 of their X25519 secret, with both ids,
// in that order, as the HKDF info, so that each direction has its own key.
func newAEAD(fromID, toID string, mine Key, peer PublicKey) (cipher.AEAD, error) {
	secret, err := mine.dh.ECDH(peer.DH)
	if err != nil {
		return nil, fmt.Errorf("trust: agree a key with %s: %w", peer.ID, err)
	}
	key, err := hkdf.Key(sha256.New, secret, []byte("kgrpc-seal-v1"), fromID+"\x00"+toID, 32)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.NewX(key)
}

// SealEvent implements kafkatransport.Guard.
func (g *Guard) SealEvent(name string, m *kafka.Message) error {
	k := g.self.Current()
	buf := g.boundBuf()
	defer g.putBound(buf)
	*buf = signedBytes(*buf, name, m, m.Headers)
	sig := ed25519.Sign(k.sign, *buf)
	m.Headers = append(m.Headers, kafka.Header{Key: HeaderSig, Value: []byte("v1 " + g.self.Unit + " " + k.ID + " " + b64.EncodeToString(sig))})
	return nil
}

// OpenEvent implements kafkatransport.Guard.
func (g *Guard) OpenEvent(name string, m *kafka.Message) (string, error) {
	v, bound, err := lastHeader(m.Headers, HeaderSig)
	if err != nil {
		return "", err
	}
	f, err := parseHeader(HeaderSig, v)
	if err != nil {
		return "", err
	}
	unit, kid := f[0], f[1]
	owner, ok := g.policy.owner(name)
	if !ok || unit != owner {
		return "", fmt.Errorf("event %s claims unit %s, but only its owner %q produces it", name, unit, owner)
	}
	pk, ok := g.ring.Key(kid)
	if !ok || pk.Unit != unit {
		return "", fmt.Errorf("unknown key %s of unit %s", kid, unit)
	}
	sig, err := b64.DecodeString(f[2])
	if err != nil {
		return "", fmt.Errorf("event %s from unit %s: bad signature: forged or changed", name, unit)
	}
	buf := g.boundBuf()
	defer g.putBound(buf)
	*buf = signedBytes(*buf, name, m, bound)
	if !ed25519.Verify(pk.Verify, *buf, sig) {
		return "", fmt.Errorf("event %s from unit %s: bad signature: forged or changed", name, unit)
	}
	return unit, nil
}

// signedBytes appends to b what an event's signature covers: the bound
// bytes and the value (which a seal covers as the ciphertext).
func signedBytes(b []byte, name string, m *kafka.Message, headers []kafka.Header) []byte {
	return appendField(boundBytes(b, kindEvent, name, m, headers, len(m.Value)), m.Value)
}

// boundBytes appends to b what a seal or signature binds: the record's
// kind, the method or event name, its topic, key and headers (all the
// record has before the seal or signature header is added), each
// length-prefixed; with room for a field of extra bytes after them.
func boundBytes(b []byte, kind, name string, m *kafka.Message, headers []kafka.Header, extra int) []byte {
	var topic string
	if m.TopicPartition.Topic != nil {
		topic = *m.TopicPartition.Topic
	}
	n := len("kgrpc-v1") + len(kind) + len(name) + len(topic) + len(m.Key) + 5*binary.MaxVarintLen32
	for _, h := range headers {
		n += len(h.Key) + len(h.Value) + 2*binary.MaxVarintLen32
	}
	b = slices.Grow(b, n+extra+binary.MaxVarintLen32)
	b = append(b, "kgrpc-v1"...)
	b = appendField(b, kind)
	b = appendField(b, name)
	b = appendField(b, topic)
	b = appendField(b, m.Key)
	b = binary.AppendUvarint(b, uint64(len(headers)))
	for _, h := range headers {
		b = appendField(b, h.Key)
		b = appendField(b, h.Value)
	}
	return b
}

// appendField appends s to b, prefixed with its length.
func appendField[S string | []byte](b []byte, s S) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// lastHeader returns the value of the last header, which must be named
// key, and the headers before it, which must not hold another signature
// header: a signature binds every header before it, so none may follow it
// and none may pose as it.
func lastHeader(hs []kafka.Header, key string) (value []byte, before []kafka.Header, err error) {
	if len(hs) == 0 || hs[len(hs)-1].Key != key {
		return nil, nil, errors.New("no " + key + " header last")
	}
	before = hs[:len(hs)-1]
	for _, h := range before {
		if h.Key == HeaderSig {
			return nil, nil, fmt.Errorf("a second %s header", HeaderSig)
		}
	}
	return hs[len(hs)-1].Value, before, nil
}

// parseHeader splits a seal or signature header, exactly "v1 A B C" (one
// space between fields, no other), into A, B and C.
func parseHeader(name string, v []byte) ([]string, error) {
	f := strings.Split(string(v), " ")
	if len(f) != 4 || f[0] != "v1" || f[1] == "" || f[2] == "" || f[3] == "" {
		return nil, fmt.Errorf("malformed %s header", name)
	}
	return f[1:], nil
}

// serviceOf returns "pkg.Service" of "/pkg.Service/Method".
func serviceOf(method string) string {
	s := strings.TrimPrefix(method, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
