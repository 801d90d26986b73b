"""Names, keys and metadata of the wire (kafkatransport/doc.go)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from kgrpc.kafka.v1 import envelope_pb2, options_pb2

# The extensions of options.proto (the generated .pyi types them loosely).
_EXT_SERVICE: Any = options_pb2.kafka
_EXT_METHOD: Any = options_pb2.kafka_method
_EXT_EVENT: Any = options_pb2.event

HDR_RPC = "rpc"
HDR_TRACEPARENT = "traceparent"
HDR_TRACESTATE = "tracestate"
HDR_EVENT_TYPE = "ev-type"
HDR_EVENT_ID = "ev-id"

# The headers of a dead letter (docs/wire.md, section 5), after the original ones.
HDR_DLQ_ERROR = "dlq-error"
HDR_DLQ_ATTEMPTS = "dlq-attempts"
HDR_DLQ_TOPIC = "dlq-topic"
HDR_DLQ_PARTITION = "dlq-partition"
HDR_DLQ_OFFSET = "dlq-offset"
HDR_DLQ_GROUP = "dlq-group"
# A stub's, instead of what is too large to copy.
HDR_DLQ_STUB = "dlq-stub"
HDR_DLQ_SIZE = "dlq-size"
HDR_DLQ_KEY_SIZE = "dlq-key-size"
HDR_DLQ_HEADERS_SIZE = "dlq-headers-size"

DEFAULT_REPLY_TOPIC = "kgrpc.replies"
DEFAULT_REPLY_PARTITIONS = 16
DEFAULT_PARTITIONS = 6
DEFAULT_CALL_RETENTION_MS = 3_600_000
DLQ_SUFFIX = ".dlq"  # a dead-letter topic is "<group>.dlq", the group's prefix included

MetadataValue = Union[str, bytes, Sequence[Union[str, bytes]]]
Metadata = Mapping[str, MetadataValue]


def method_descriptor(method: str) -> MethodDescriptor:
    """The descriptor of "/pkg.Service/Method" in the default pool (import its _pb2 first)."""
    svc, _, name = method.lstrip("/").rpartition("/")
    try:
        return descriptor_pool.Default().FindServiceByName(svc).methods_by_name[name]
    except KeyError:
        raise LookupError(f"unknown method {method}: import the _pb2 module of its service") from None


def request_topic(method: str) -> str:
    """The request topic of method's service: its full name, or its (kgrpc.kafka.v1.kafka).topic."""
    svc = method_descriptor(method).containing_service
    opts = svc.GetOptions()
    if opts.HasExtension(_EXT_SERVICE):
        t: str = opts.Extensions[_EXT_SERVICE].topic
        if t:
            return t
    name: str = svc.full_name
    return name


def key_text(value: object) -> bytes:
    """A field value as record key text: integers in decimal, bools as true/false, bytes as is."""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"a partition key of type {type(value).__name__}")


def partition_key(method: str, request: Message) -> bytes | None:
    """The record key of a request: its (kgrpc.kafka.v1.kafka_method).partition_key field, or None."""
    opts = method_descriptor(method).GetOptions()
    if not opts.HasExtension(_EXT_METHOD):
        return None
    field: str = opts.Extensions[_EXT_METHOD].partition_key
    if not field:
        return None
    value: object = request
    for name in field.split("."):  # a dotted path through singular message fields
        value = getattr(value, name)
    if isinstance(value, (str, bytes)) and not value:
        return None  # an empty string or bytes: no key (docs/wire.md, section 6)
    return key_text(value)


@dataclass(frozen=True)
class EventSpec:
    name: str  # the message's full name, the ev-type header
    topic: str  # without prefix
    key_field: str


def event_spec(cls: type[Message]) -> EventSpec:
    """The topic and key of an event message from its (kgrpc.kafka.v1.event) option."""
    desc = cls.DESCRIPTOR
    opts = desc.GetOptions()
    if not opts.HasExtension(_EXT_EVENT):
        raise ValueError(f"{desc.full_name} is not an event: no (kgrpc.kafka.v1.event) option")
    ev: Any = opts.Extensions[_EXT_EVENT]
    return EventSpec(desc.full_name, ev.topic or desc.full_name, ev.key)


def encode_metadata(md: Metadata | None) -> list[envelope_pb2.MetadataEntry]:
    """One MetadataEntry per key (lower-cased, as gRPC metadata keys are), values as raw bytes,
    entries in key order (docs/wire.md, section 2: one call has one encoding)."""
    merged: dict[str, list[bytes]] = {}
    for k, v in (md or {}).items():
        vs: Iterable[str | bytes] = [v] if isinstance(v, (str, bytes)) else v
        values = [x.encode() if isinstance(x, str) else x for x in vs]
        if k and values:
            merged.setdefault(k.lower(), []).extend(values)
    return [envelope_pb2.MetadataEntry(key=k, values=merged[k]) for k in sorted(merged, key=lambda k: k.encode())]


def request_envelope(method: str, cid: str, reply_topic: str, reply_partition: int, deadline_ms: int,
                     metadata: Metadata | None) -> bytes:
    """The rpc header of a request record (docs/wire.md, section 2)."""
    env = envelope_pb2.RequestEnvelope(method=method, id=cid, reply_topic=reply_topic, reply_partition=reply_partition,
                                       deadline_unix_ms=deadline_ms, metadata=encode_metadata(metadata))
    return env.SerializeToString(deterministic=True)


def decode_metadata(entries: Iterable[envelope_pb2.MetadataEntry]) -> dict[str, list[bytes]]:
    """Metadata entries as a dict; entries without key or values are dropped, as receivers do."""
    md: dict[str, list[bytes]] = {}
    for e in entries:
        if e.key and len(e.values):
            md.setdefault(e.key, []).extend(e.values)
    return md


def first_value(md: Metadata | None, key: str) -> bytes | None:
    for k, v in (md or {}).items():
        if k.lower() == key:
            x = v if isinstance(v, (str, bytes)) else (v[0] if len(v) else None)
            if x is not None:
                return x.encode() if isinstance(x, str) else x
    return None
