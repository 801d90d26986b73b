"""The golden vectors of docs/wire.md (kafkatransport/testdata/vectors/*.json):
the bytes the spec fixes, which this package must produce and accept as the
Go transport does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.rpc import error_details_pb2

from conftest import REPO
from kgrpc import wire
from kgrpc.kafka.v1 import envelope_pb2
from kgrpc.status import decode_details
from kgrpc.testing.v1 import echo_pb2

VECTORS = REPO / "kafkatransport" / "testdata" / "vectors"


def vector(name: str) -> dict[str, Any]:
    v: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return v


def header(v: dict[str, Any], key: str) -> bytes:
    for h in v["headers"]:
        if h["key"] == key:
            return bytes.fromhex(h["hex"])
    raise KeyError(key)


def key(v: dict[str, Any]) -> bytes | None:
    return None if v["key"] is None else bytes.fromhex(v["key"]["hex"])


def test_request_produced_byte_for_byte() -> None:
    v = vector("request")
    env = envelope_pb2.RequestEnvelope()
    env.ParseFromString(header(v, "rpc"))
    metadata = {e.key: list(e.values) for e in reversed(env.metadata)}  # any order in: key order out
    produced = wire.request_envelope(env.method, env.id, env.reply_topic, env.reply_partition, env.deadline_unix_ms, metadata)
    assert produced == header(v, "rpc")
    req = echo_pb2.EchoRequest()
    req.ParseFromString(bytes.fromhex(v["value"]["hex"]))
    assert req.SerializeToString(deterministic=True) == bytes.fromhex(v["value"]["hex"])
    assert wire.request_topic(env.method) == v["topic"]
    assert wire.partition_key(env.method, req) == key(v)
    assert [h["key"] for h in v["headers"]] == ["rpc", "traceparent"]
    assert header(v, "traceparent") == wire.first_value(metadata, "traceparent")


def test_reply_ok_accepted() -> None:
    v = vector("reply-ok")
    env = envelope_pb2.ReplyEnvelope()
    env.ParseFromString(header(v, "rpc"))
    assert env.code == 0 and env.id == vector("request")["headers"][0]["decoded"]["id"]
    assert wire.decode_metadata(env.header) == {"x-served-by": [b"echo-a"]}
    resp = echo_pb2.EchoResponse()
    resp.ParseFromString(bytes.fromhex(v["value"]["hex"]))
    assert resp.message == "hello" and key(v) is None
    assert env.SerializeToString(deterministic=True) == header(v, "rpc")


def test_reply_error_details() -> None:
    v = vector("reply-error")
    env = envelope_pb2.ReplyEnvelope()
    env.ParseFromString(header(v, "rpc"))
    assert env.code == 9 and env.message == 'insufficient stock for product "p_1"'
    assert v["value"]["hex"] == ""
    details = decode_details(env.status_details)
    assert len(details) == 1 and isinstance(details[0], error_details_pb2.PreconditionFailure)
    violation = details[0].violations[0]
    assert (violation.type, violation.subject) == ("STOCK", "p_1")
    assert env.SerializeToString(deterministic=True) == header(v, "rpc")


def test_event() -> None:
    v = vector("event")
    spec = wire.event_spec(echo_pb2.Pinged)
    assert header(v, "ev-type") == spec.name.encode() and spec.topic == v["topic"]
    ev = echo_pb2.Pinged()
    ev.ParseFromString(bytes.fromhex(v["value"]["hex"]))
    assert ev.SerializeToString(deterministic=True) == bytes.fromhex(v["value"]["hex"])
    assert wire.key_text(getattr(ev, spec.key_field)) == key(v)


def test_empty_string_key_is_no_key() -> None:
    """Section 6: an empty string gives no key (null), not an empty one."""
    echo = "/kgrpc.testing.v1.EchoService/Echo"
    assert wire.partition_key(echo, echo_pb2.EchoRequest(key="")) is None
    assert wire.partition_key(echo, echo_pb2.EchoRequest(key="k")) == b"k"


@pytest.mark.parametrize("value,want", [("a", b"a"), (b"\x00", b"\x00"), (7, b"7"), (-3, b"-3"), (True, b"true"), (False, b"false")])
def test_key_text(value: object, want: bytes) -> None:
    """Section 6: numbers (enums too) in decimal, bools as words, bytes as they are."""
    assert wire.key_text(value) == want
