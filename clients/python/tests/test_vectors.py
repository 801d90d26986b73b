"""The wire vectors (kafkatransport/testdata/vectors): records the Go transport
produced, checked byte for byte by the Python code (format: ../README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2

from conftest import REPO
from kgrpc.kafka.v1 import envelope_pb2
from kgrpc.status import decode_details
from kgrpc.testing.v1 import echo_pb2
from kgrpc.trust import Guard, Keyring, NotAuthentic, Policy, UnitKey, read_uvarint

_ = echo_pb2  # registers the echo service's messages
VECTORS = REPO / "kafkatransport" / "testdata" / "vectors"
FORMAT = "kgrpc-vector-v1"
# The vectors' policy (kafkatransport/trust/vectors_test.go): "echo" serves
# kgrpc.testing.v1 and publishes its events; "client" calls it.
POLICY = Policy(owners={"kgrpc.testing.v1": "echo"}, per_unit=())


def load_vectors() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in sorted(VECTORS.rglob("*.json")):
        v = json.loads(f.read_text())
        if isinstance(v, dict) and v.get("format") == FORMAT:
            out.append((f, v))
    return out


ALL = load_vectors()


def test_there_are_vectors() -> None:
    kinds = {v["kind"] for _, v in ALL}
    assert len(ALL) >= 5 and kinds == {"request", "reply", "event"}, [f.name for f, _ in ALL]


def guard(unit: str) -> Guard:
    keys = VECTORS / "keys"
    return Guard(UnitKey.load(keys / f"{unit}.key"), Keyring.load(keys / "keyring.json"), POLICY)


def record(v: dict[str, Any]) -> tuple[bytes | None, list[tuple[str, bytes]], bytes]:
    key = None if v["key"] is None else bytes.fromhex(v["key"])
    headers = [(h["key"], bytes.fromhex(h["value"])) for h in v["headers"]]
    return key, headers, bytes.fromhex(v["value"])


def message_class(name: str) -> Any:
    return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(name))


@pytest.mark.parametrize("path,v", ALL, ids=[f.stem for f, _ in ALL])
def test_vector(path: Path, v: dict[str, Any]) -> None:
    key, headers, value = record(v)
    plain = bytes.fromhex(v["plain"])
    if v["message_type"]:  # the message decodes and encodes again to the same bytes
        m = message_class(v["message_type"])()
        m.ParseFromString(plain)
        assert m.SerializeToString(deterministic=True) == plain
    if v["kind"] in ("request", "reply"):
        rpc = dict(headers)["rpc"]
        env: Any = envelope_pb2.RequestEnvelope() if v["kind"] == "request" else envelope_pb2.ReplyEnvelope()
        assert v["envelope"] == env.DESCRIPTOR.full_name
        env.ParseFromString(rpc)
        assert env.SerializeToString() == rpc, "the envelope encodes again to the same bytes"
        recipient = guard(v["recipient"])
        if v["kind"] == "request":
            assert env.method == v["method"] and env.id and env.reply_topic and env.deadline_unix_ms > 0
            producer, opened = recipient.open_request(v["method"], v["topic"], key, headers, value)
            assert producer == v["producer"]
        else:
            opened = recipient.open_reply(v["method"], v["topic"], key, headers, value)
            if env.code:
                details = decode_details(env.status_details)
                assert details and isinstance(details[0], error_details_pb2.ErrorInfo), details
        assert opened == plain
        # Sealed again by the producer with the vector's nonce: the same bytes.
        n, k = read_uvarint(value)
        nonce = value[k + n:k + n + 24]
        again = guard(v["producer"]).seal(v["kind"], v["method"], v["recipient"], v["topic"], key, headers, plain, nonce=nonce)
        assert again == value
        with pytest.raises(NotAuthentic):  # a header added: no longer opens
            recipient.open(v["kind"], v["method"], v["topic"], key, [*headers, ("x", b"y")], value)
        with pytest.raises(NotAuthentic):  # another topic: no longer opens
            recipient.open(v["kind"], v["method"], v["topic"] + "x", key, headers, value)
    elif v["kind"] == "event":
        assert value == plain
        assert dict(headers)["ev-type"].decode() == v["method"]
        assert guard("client").open_event(v["method"], v["topic"], key, headers, value) == v["producer"]
        assert guard(v["producer"]).sign_event(v["method"], v["topic"], key, headers[:-1], value) == headers
        with pytest.raises(NotAuthentic):
            guard("client").open_event(v["method"], v["topic"], key, headers, value + b"\x00")
    else:
        pytest.fail(f"kind {v['kind']!r}")
