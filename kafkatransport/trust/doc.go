// Package trust gives each unit of a system (a deployable: a gateway, a
// service) its own asymmetric keys, and with them authenticates every record
// the unit produces over kafkatransport: the Guard it makes is a
// kafkatransport.Guard (install it with kafkatransport.WithGuard).
//
// # Keys
//
// A unit holds a UnitKey file (private, mode 0600): one or more Keys, each an
// Ed25519 key pair, which signs, and an X25519 key pair, which agrees keys,
// under one key id "<unit>-<yyyymmdd>-<8 hex>". Every unit also holds the
// Keyring: the public keys of all units, as a JSON Web Key Set. The
// cmd/kgrpc-keys tool makes, rotates and retires them.
//
// # Calls: sealed
//
// A request is sealed for the unit that serves its service (Policy.Owners),
// a reply for the unit that made the request: the record's value is
// replaced by uvarint(length of the descriptor) || the seal descriptor,
// exactly "v1 <unit> <producer's key id> <recipient's key id>" || a random
// nonce (24 bytes) || XChaCha20-Poly1305 ciphertext and tag, under a key
// derived with HKDF-SHA256 (salt "kgrpc-seal-v1", info "<producer's key id>
// NUL <recipient's key id>") from the X25519 secret of the producer's
// current key and the recipient's oldest key in the keyring. Random 24-byte
// nonces do not repeat in any number of records under one key. No header
// is added: one more header costs confluent-kafka-go a few per cent of a
// call's throughput. The sealed bytes bind, as additional data, the record
// kind ("request" or "reply"), the full method name, the topic, the key,
// every header and the descriptor. So only
// the two units can read a call's value, a record cannot be moved to
// another topic or method or have its metadata changed, and the producing
// unit is authenticated: the recipient opens a
// request only when the claimed unit's key agreed the key, and then checks
// that the unit may call the method (Policy.Calls); a reply opens only when
// it comes from the unit that serves the method. Sealing costs a few
// microseconds per record; the X25519 agreement runs once per pair of keys.
//
// A service that every unit serves for itself, such as the health service
// on the topics kafkatransport.HealthSpec names
// ("grpc.health.v1.Health.<unit>"), is listed in Policy.PerUnit rather
// than Policy.Owners: its requests are sealed for the unit whose name ends
// the request topic, and its replies open from any unit of the keyring,
// since a reply record does not name its request's topic. So another
// unit holding keys could answer a health check in a unit's place; it
// cannot read the check nor act as a caller the Policy does not allow.
//
// What sealing does not hide: the record key (a partition key such as an
// email), the envelope (method, correlation id, deadline and metadata: the
// gateway's principal names a user id and role, idempotency keys), reply
// headers and error messages. They are authenticated, not secret.
//
// A replayed request record opens, so replay is bounded by what binds it:
// its deadline (a header of the envelope), after which the server drops it,
// and its correlation id, which the idempotency interceptor
// (kafkatransport/idempotency) runs once for methods with side effects; a
// read replayed until its deadline runs again. The keys are static, so a
// unit key stolen later opens the calls recorded before (no forward
// secrecy): keep call retention short (kafkatransport.WithCallRetention).
//
// # Events: signed
//
// An event is read by any number of units, so it is signed rather than
// sealed: HeaderSig, last, is "v1 <unit> <key id> <Ed25519 signature,
// base64url>" over the same bound bytes (kind "event", the event's full
// name) followed by the length-prefixed value. A subscriber accepts it only from the unit that owns the event's
// protobuf package (Policy.Owners) with a key of that unit in the keyring;
// any other record is dead-lettered with the reason. Events are not
// encrypted: they must not carry secrets.
//
// # Rotation
//
// A unit signs and seals with its newest key and opens with any key it
// holds; peers seal to its oldest key in the keyring. To rotate a unit's
// keys: add a key (kgrpc-keys rotate), give every unit the new keyring,
// then give the unit its new key file; once nothing signed with the old
// key is needed any more (tokens it signed have expired), retire it
// (kgrpc-keys retire) and hand out both files again.
package trust
