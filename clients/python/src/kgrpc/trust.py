"""Record authentication as kafkatransport/trust does it (see its doc.go).

Calls are sealed: a request for the unit that serves its method, a reply
for the unit that made the request. The value becomes

    uvarint(len(descriptor)) || descriptor || nonce (24 bytes) || ciphertext+tag

where descriptor is exactly "v1 <unit> <producer key id> <recipient key id>"
and the cipher is XChaCha20-Poly1305 under HKDF-SHA256(X25519 secret,
salt "kgrpc-seal-v1", info "<producer key id>\\0<recipient key id>"), with
the bound bytes (below) plus the descriptor as additional data.

Events are signed: the last header "kgrpc-sig" is
"v1 <unit> <key id> <Ed25519 signature, base64url>" over the bound bytes
followed by the length-prefixed value.

Bound bytes: "kgrpc-v1", then length-prefixed (uvarint) kind ("request",
"reply", "event"), name (full method or event name), topic and key, then
uvarint(number of headers) and each header's length-prefixed name and value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

Header = tuple[str, bytes]

HEADER_SIG = "kgrpc-sig"
KIND_REQUEST = "request"
KIND_REPLY = "reply"
KIND_EVENT = "event"
MAX_SEAL_DESC = 256
NONCE_SIZE = 24

_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


class NotAuthentic(Exception):
    """A record that does not open or verify: forged, changed, or of an unknown key."""


def b64decode(s: str) -> bytes:
    """Decodes unpadded base64url, as the key files and signatures use."""
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_uvarint(b: bytes) -> tuple[int, int]:
    """Returns the value and the number of bytes read, or (0, 0) when b holds no uvarint."""
    n = shift = 0
    for i, c in enumerate(b[:10]):
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i + 1
        shift += 7
    return 0, 0


def _field(b: bytes | str) -> bytes:
    raw = b.encode() if isinstance(b, str) else b
    return uvarint(len(raw)) + raw


def bound_bytes(kind: str, name: str, topic: str, key: bytes | None, headers: Sequence[Header]) -> bytes:
    """What a seal or signature binds, before its own extra field."""
    parts = [b"kgrpc-v1", _field(kind), _field(name), _field(topic), _field(key or b""), uvarint(len(headers))]
    for k, v in headers:
        parts.append(_field(k))
        parts.append(_field(v or b""))
    return b"".join(parts)


def hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def _parse_time(s: str | None) -> datetime:
    if not s:
        return _EPOCH
    # Go writes RFC 3339 with up to 9 fractional digits; Python reads 6.
    if "." in s:
        head, frac = s.split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        s = head + "." + digits[:6].ljust(6, "0") + frac[len(digits):]
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(frozen=True)
class PublicKey:
    unit: str
    kid: str
    created: datetime
    verify: bytes  # Ed25519 public key
    dh: bytes  # X25519 public key


@dataclass(frozen=True)
class Key:
    kid: str
    created: datetime
    seed: bytes  # Ed25519 seed
    x25519: bytes  # X25519 private scalar

    def public(self, unit: str) -> PublicKey:
        vk = bytes(nacl.signing.SigningKey(self.seed).verify_key)
        return PublicKey(unit, self.kid, self.created, vk, nacl.bindings.crypto_scalarmult_base(self.x25519))


@dataclass
class UnitKey:
    """A unit's private key file (kgrpc-keys; <data-dir>/keys/<unit>.key)."""

    unit: str
    keys: list[Key]  # newest first

    @property
    def current(self) -> Key:
        return self.keys[0]

    def key(self, kid: str) -> Key | None:
        return next((k for k in self.keys if k.kid == kid), None)

    @classmethod
    def parse(cls, body: bytes | str) -> UnitKey:
        f = json.loads(body)
        keys = [
            Key(e["kid"], _parse_time(e.get("created")), b64decode(e["ed25519_seed"]), b64decode(e["x25519"]))
            for e in f["keys"]
        ]
        if not keys:
            raise ValueError("unit key file without keys")
        keys.sort(key=lambda k: (k.created, k.kid), reverse=True)
        return cls(f["unit"], keys)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UnitKey:
        return cls.parse(Path(path).read_bytes())


@dataclass
class Keyring:
    """Every unit's public keys: a JSON Web Key Set of OKP keys, two entries
    (Ed25519 "sig", X25519 "enc") per key id, with kgrpc_unit and kgrpc_created."""

    keys: list[PublicKey] = field(default_factory=list)  # by unit, newest first

    @classmethod
    def parse(cls, body: bytes | str) -> Keyring:
        halves: dict[str, dict[str, object]] = {}
        for j in json.loads(body)["keys"]:
            if j.get("kty") != "OKP":
                raise ValueError(f"key {j.get('kid')!r}: want an OKP key")
            e = halves.setdefault(j["kid"], {"unit": j["kgrpc_unit"], "created": _parse_time(j.get("kgrpc_created"))})
            if e["unit"] != j["kgrpc_unit"]:
                raise ValueError(f"key {j['kid']!r} claimed by two units")
            crv = {"Ed25519": "verify", "X25519": "dh"}.get(j["crv"])
            if crv is None:
                raise ValueError(f"key {j['kid']!r}: curve {j['crv']!r}")
            e[crv] = b64decode(j["x"])
        keys = []
        for kid, e in halves.items():
            if "verify" not in e or "dh" not in e:
                raise ValueError(f"key {kid!r}: want both its Ed25519 and its X25519 half")
            keys.append(PublicKey(str(e["unit"]), kid, e["created"], e["verify"], e["dh"]))  # type: ignore[arg-type]
        ring = cls(keys)
        ring._sort()
        return ring

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        return cls.parse(Path(path).read_bytes())

    def _sort(self) -> None:
        self.keys.sort(key=lambda k: (k.created, k.kid), reverse=True)
        self.keys.sort(key=lambda k: k.unit)

    def key(self, kid: str) -> PublicKey | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def unit_keys(self, unit: str) -> list[PublicKey]:
        return [k for k in self.keys if k.unit == unit]

    def oldest(self, unit: str) -> PublicKey | None:
        ks = self.unit_keys(unit)
        return ks[-1] if ks else None


@dataclass(frozen=True)
class Policy:
    """Which unit serves (and publishes the events of) each protobuf package,
    and the services every unit serves for itself on "<topic>.<unit>"."""

    owners: Mapping[str, str]
    per_unit: Sequence[str] = ("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection")

    def owner(self, full_name: str) -> str | None:
        pkg, _, _ = full_name.rpartition(".")
        return self.owners.get(pkg) if pkg else None

    def server(self, method: str, topic: str) -> str | None:
        svc = service_of(method)
        if svc not in self.per_unit:
            return self.owner(svc)
        _, dot, unit = topic.rpartition(".")
        return unit if dot and unit else None


# The shop's policy (internal/app/trust.go Policy): who serves what.
SHOP_POLICY = Policy(owners={"shop.users.v1": "usersvc", "shop.products.v1": "productsvc", "shop.orders.v1": "ordersvc"})


def service_of(method: str) -> str:
    """ "pkg.Service" of "/pkg.Service/Method"."""
    return method.lstrip("/").rpartition("/")[0]


def _parse_desc(what: str, v: bytes) -> tuple[str, str, str]:
    f = v.decode("utf-8", "replace").split(" ")
    if len(f) != 4 or f[0] != "v1" or not all(f[1:]):
        raise NotAuthentic(f"malformed {what} header")
    return f[1], f[2], f[3]


class Guard:
    """The seals and signatures of one unit, as trust.Guard makes and checks them."""

    def __init__(self, self_key: UnitKey, ring: Keyring, policy: Policy = SHOP_POLICY) -> None:
        cur = self_key.current
        pk = ring.key(cur.kid)
        if pk is None or pk.unit != self_key.unit or pk.verify != cur.public(self_key.unit).verify:
            raise ValueError(f"the keyring does not hold unit {self_key.unit}'s current key {cur.kid}")
        self.self_key = self_key
        self.ring = ring
        self.policy = policy

    @classmethod
    def from_dir(cls, key_dir: str | os.PathLike[str], unit: str, policy: Policy = SHOP_POLICY) -> Guard:
        """The Guard of unit from a key directory (<data-dir>/keys of cmd/platform)."""
        d = Path(key_dir)
        return cls(UnitKey.load(d / f"{unit}.key"), Keyring.load(d / "keyring.json"), policy)

    @property
    def unit(self) -> str:
        return self.self_key.unit

    @staticmethod
    def _aead_key(from_kid: str, to_kid: str, mine: Key, peer_dh: bytes) -> bytes:
        secret = nacl.bindings.crypto_scalarmult(mine.x25519, peer_dh)
        return hkdf_sha256(secret, b"kgrpc-seal-v1", from_kid.encode() + b"\x00" + to_kid.encode())

    def seal(self, kind: str, name: str, to_unit: str, topic: str, key: bytes | None,
             headers: Sequence[Header], value: bytes, nonce: bytes | None = None) -> bytes:
        """Returns the sealed value of a call record for to_unit."""
        peer = self.ring.oldest(to_unit)
        if peer is None:
            raise ValueError(f"the keyring has no key of unit {to_unit}")
        cur = self.self_key.current
        desc = f"v1 {self.unit} {cur.kid} {peer.kid}".encode()
        k = self._aead_key(cur.kid, peer.kid, cur, peer.dh)
        ad = bound_bytes(kind, name, topic, key, headers) + _field(desc)
        n = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        ct = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(value, ad, n, k)
        return uvarint(len(desc)) + desc + n + ct

    def open(self, kind: str, name: str, topic: str, key: bytes | None,
             headers: Sequence[Header], value: bytes) -> tuple[str, bytes]:
        """Opens a sealed call record; returns its producing unit and the plain value."""
        size, k = read_uvarint(value)
        if k <= 0 or size == 0 or size > MAX_SEAL_DESC or len(value) - k < size:
            raise NotAuthentic("not a sealed value")
        desc, rest = value[k:k + size], value[k + size:]
        unit, from_kid, to_kid = _parse_desc("seal", desc)
        peer = self.ring.key(from_kid)
        if peer is None or peer.unit != unit:
            raise NotAuthentic(f"unknown key {from_kid} of unit {unit}")
        mine = self.self_key.key(to_kid)
        if mine is None:
            raise NotAuthentic(f"sealed to key {to_kid}, which unit {self.unit} does not hold")
        if len(rest) < NONCE_SIZE:
            raise NotAuthentic("sealed value too short")
        aead_key = self._aead_key(from_kid, to_kid, mine, peer.dh)
        ad = bound_bytes(kind, name, topic, key, headers) + _field(desc)
        try:
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(rest[NONCE_SIZE:], ad, rest[:NONCE_SIZE], aead_key)
        except nacl.exceptions.CryptoError:
            raise NotAuthentic(f"{kind} from unit {unit} does not open: forged or changed") from None
        return unit, bytes(plain)

    def seal_request(self, method: str, topic: str, key: bytes | None, headers: Sequence[Header], value: bytes) -> bytes:
        to = self.policy.server(method, topic)
        if to is None:
            raise ValueError(f"no unit serves {method} on topic {topic} (Policy.owners, Policy.per_unit)")
        return self.seal(KIND_REQUEST, method, to, topic, key, headers, value)

    def open_request(self, method: str, topic: str, key: bytes | None, headers: Sequence[Header], value: bytes) -> tuple[str, bytes]:
        return self.open(KIND_REQUEST, method, topic, key, headers, value)

    def seal_reply(self, method: str, caller: str, topic: str, headers: Sequence[Header], value: bytes) -> bytes:
        return self.seal(KIND_REPLY, method, caller, topic, None, headers, value)

    def open_reply(self, method: str, topic: str, key: bytes | None, headers: Sequence[Header], value: bytes) -> bytes:
        """Opens a reply to a call of method, checking that the unit serving it produced it."""
        producer, plain = self.open(KIND_REPLY, method, topic, key, headers, value)
        svc = service_of(method)
        if svc not in self.policy.per_unit and producer != self.policy.owner(svc):
            raise NotAuthentic(f"reply to {method} produced by unit {producer}, which does not serve it")
        return plain

    def sign_event(self, name: str, topic: str, key: bytes | None, headers: Sequence[Header], value: bytes) -> list[Header]:
        """Returns headers with the kgrpc-sig header appended."""
        cur = self.self_key.current
        msg = bound_bytes(KIND_EVENT, name, topic, key, headers) + _field(value)
        sig = nacl.signing.SigningKey(cur.seed).sign(msg).signature
        return [*headers, (HEADER_SIG, f"v1 {self.unit} {cur.kid} {b64encode(sig)}".encode())]

    def open_event(self, name: str, topic: str, key: bytes | None, headers: Sequence[Header], value: bytes) -> str:
        """Verifies an event's signature; returns its producing unit, the owner of its package."""
        if not headers or headers[-1][0] != HEADER_SIG:
            raise NotAuthentic(f"no {HEADER_SIG} header last")
        before = headers[:-1]
        if any(h == HEADER_SIG for h, _ in before):
            raise NotAuthentic(f"a second {HEADER_SIG} header")
        unit, kid, sig_b64 = _parse_desc(HEADER_SIG, headers[-1][1])
        owner = self.policy.owner(name)
        if owner is None or unit != owner:
            raise NotAuthentic(f"event {name} claims unit {unit}, but only its owner {owner!r} produces it")
        pk = self.ring.key(kid)
        if pk is None or pk.unit != unit:
            raise NotAuthentic(f"unknown key {kid} of unit {unit}")
        msg = bound_bytes(KIND_EVENT, name, topic, key, before) + _field(value)
        try:
            nacl.signing.VerifyKey(pk.verify).verify(msg, b64decode(sig_b64))
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise NotAuthentic(f"event {name} from unit {unit}: bad signature: forged or changed") from None
        return unit
