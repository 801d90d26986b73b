"""The unary client: one request record, one reply record (kafkatransport/doc.go)."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message as KafkaMessage, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from google.protobuf.message import DecodeError, Message

from kgrpc import wire
from kgrpc.kafka.v1 import envelope_pb2
from kgrpc.status import Code, RpcError, decode_details
from kgrpc.trust import Guard, NotAuthentic

log = logging.getLogger("kgrpc")

R = TypeVar("R", bound=Message)


@dataclass
class Reply(Generic[R]):
    """A call's response with its header and trailer metadata."""

    response: R
    header: dict[str, list[bytes]] = field(default_factory=dict)
    trailer: dict[str, list[bytes]] = field(default_factory=dict)


@dataclass
class _Pending:
    method: str
    done: threading.Event = field(default_factory=threading.Event)
    envelope: envelope_pb2.ReplyEnvelope | None = None
    value: bytes = b""
    error: RpcError | None = None


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _headers(m: KafkaMessage) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for h in m.headers() or []:
        k, v = h[0], h[1]
        out.append((k, v.encode() if isinstance(v, str) else (v or b"")))
    return out


def ensure_topic(admin: AdminClient, topic: str, partitions: int, config: Mapping[str, str], timeout: float) -> None:
    """Creates topic when missing (replication factor: the broker's default)."""
    md = admin.list_topics(topic=topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is not None and t.error is None and t.partitions:
        return
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=dict(config))],
                             operation_timeout=timeout, request_timeout=timeout)
    for f in fs.values():
        try:
            f.result(timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


class Client:
    """Calls unary methods of services served over Kafka by kafkatransport.

    It reads its replies from one partition of the shared reply topic by
    direct assignment, starting at the offset the broker gives as the
    partition's high watermark at start (not librdkafka's lazily resolved
    end: a reply produced before that resolves would be skipped).
    """

    def __init__(self, brokers: str, *, guard: Guard | None = None, topic_prefix: str = "",
                 reply_topic: str = wire.DEFAULT_REPLY_TOPIC, reply_partition: int | None = None,
                 instance_id: str | None = None, default_timeout: float = 30.0,
                 kafka_config: Mapping[str, Any] | None = None, start_timeout: float = 30.0) -> None:
        self.guard = guard
        self.prefix = topic_prefix
        self.default_timeout = default_timeout
        self.reply_topic = topic_prefix + reply_topic
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        self._id_prefix = f"{self.instance_id}-{random.getrandbits(32):08x}-"
        self._seq = 0
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._closed = threading.Event()
        base: dict[str, Any] = {"bootstrap.servers": brokers, "client.id": "kgrpc-" + self.instance_id,
                                "reconnect.backoff.max.ms": 1000}
        base.update(kafka_config or {})
        self._producer = Producer({**base, "linger.ms": 0, "acks": "all", "max.in.flight.requests.per.connection": 2,
                                   "allow.auto.create.topics": False})
        admin = AdminClient(base)
        deadline = time.monotonic() + start_timeout
        ensure_topic(admin, self.reply_topic, wire.DEFAULT_REPLY_PARTITIONS,
                     {"retention.ms": str(wire.DEFAULT_CALL_RETENTION_MS)}, start_timeout)
        partitions = 0
        while True:  # a topic just created takes a moment to have leaders
            t = admin.list_topics(topic=self.reply_topic, timeout=max(0.1, deadline - time.monotonic())).topics.get(self.reply_topic)
            if t is not None and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
                partitions = len(t.partitions)
                break
            if time.monotonic() > deadline:
                raise RpcError(Code.UNAVAILABLE, f"reply topic {self.reply_topic} has no leaders")
            time.sleep(0.1)
        self.reply_partition = random.randrange(partitions) if reply_partition is None else reply_partition
        if not 0 <= self.reply_partition < partitions:
            raise ValueError(f"reply partition {self.reply_partition} out of range: {self.reply_topic} has {partitions}")
        self._consumer = Consumer({**base, "group.id": "kgrpc-reply-" + self.instance_id, "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
        # The recipe of the spec: query the high watermark and assign at that
        # exact offset before the first request is sent.
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.reply_topic, self.reply_partition), timeout=max(0.1, deadline - time.monotonic()), cached=False)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._consumer.assign([TopicPartition(self.reply_topic, self.reply_partition, high)])
        self._thread = threading.Thread(target=self._loop, name="kgrpc-replies", daemon=True)
        self._thread.start()
        log.info("kgrpc client ready: reply topic %s partition %d offset %d", self.reply_topic, self.reply_partition, high)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(5)
        with self._lock:
            pending, self._pending = self._pending, {}
        for p in pending.values():
            p.error = RpcError(Code.UNAVAILABLE, "kgrpc: client closed")
            p.done.set()
        self._producer.flush(5)
        self._consumer.close()

    def call(self, method: str, request: Message, response_type: type[R], *, timeout: float | None = None,
             metadata: wire.Metadata | None = None, key: bytes | None = None, topic: str | None = None) -> R:
        """Calls method ("/pkg.v1.Service/Method") and returns its response, or raises RpcError."""
        return self.call_with_metadata(method, request, response_type, timeout=timeout, metadata=metadata, key=key, topic=topic).response

    def call_with_metadata(self, method: str, request: Message, response_type: type[R], *, timeout: float | None = None,
                           metadata: wire.Metadata | None = None, key: bytes | None = None, topic: str | None = None) -> Reply[R]:
        """call, also returning the reply's header and trailer metadata.

        key and topic default to those the method's options give
        ((kgrpc.kafka.v1.kafka_method).partition_key, (kgrpc.kafka.v1.kafka).topic).
        """
        if self._closed.is_set():
            raise RpcError(Code.UNAVAILABLE, "kgrpc: client closed")
        timeout = self.default_timeout if timeout is None else timeout
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        with self._lock:
            self._seq += 1
            cid = self._id_prefix + _base36(self._seq)
        rtopic = self.prefix + (topic or wire.request_topic(method))
        if key is None:
            key = wire.partition_key(method, request)
        env = wire.request_envelope(method, cid, self.reply_topic, self.reply_partition, deadline_ms, metadata)
        headers: list[tuple[str, bytes]] = [(wire.HDR_RPC, env)]
        for h in (wire.HDR_TRACEPARENT, wire.HDR_TRACESTATE):
            v = wire.first_value(metadata, h)
            if v is not None:
                headers.append((h, v))
        value = request.SerializeToString()
        if self.guard is not None:
            value = self.guard.seal_request(method, rtopic, key, headers, value)
        p = _Pending(method)
        with self._lock:
            self._pending[cid] = p

        def delivered(err: KafkaError | None, _msg: KafkaMessage) -> None:
            if err is not None:
                code = Code.RESOURCE_EXHAUSTED if err.code() == KafkaError.MSG_SIZE_TOO_LARGE else Code.UNAVAILABLE
                self._finish(cid, error=RpcError(code, f"kgrpc: produce request: {err}"))

        try:
            self._producer.produce(rtopic, value=value, key=key, headers=list[tuple[str, str | bytes | None]](headers), on_delivery=delivered)
        except (KafkaException, BufferError) as e:
            self._finish(cid)
            raise RpcError(Code.UNAVAILABLE, f"kgrpc: produce request: {e}") from None
        self._producer.poll(0)
        if not p.done.wait(max(0.0, deadline_ms / 1000 - time.time())):
            self._finish(cid)
            raise RpcError(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
        if p.error is not None:
            raise p.error
        assert p.envelope is not None
        env_r = p.envelope
        header, trailer = wire.decode_metadata(env_r.header), wire.decode_metadata(env_r.trailer)
        if env_r.code != 0:
            raise RpcError(env_r.code, env_r.message, decode_details(env_r.status_details), header, trailer)
        resp = response_type()
        try:
            resp.ParseFromString(p.value)
        except DecodeError as e:
            raise RpcError(Code.INTERNAL, f"kgrpc: unmarshal response: {e}") from None
        return Reply(resp, header, trailer)

    def _finish(self, cid: str, *, error: RpcError | None = None) -> _Pending | None:
        with self._lock:
            p = self._pending.pop(cid, None)
        if p is not None and error is not None:
            p.error = error
            p.done.set()
        return p

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0)
            m = self._consumer.poll(0.05)
            if m is None:
                continue
            if m.error() is not None:
                log.debug("kgrpc reply consumer: %s", m.error())
                continue
            try:
                self._handle(m)
            except Exception:  # a bad reply must not end the loop
                log.exception("kgrpc: handling a reply")

    def _handle(self, m: KafkaMessage) -> None:
        headers = _headers(m)
        raw = next((v for k, v in headers if k == wire.HDR_RPC), None)
        if raw is None:
            return  # a stream frame, or not ours
        env = envelope_pb2.ReplyEnvelope()
        try:
            env.ParseFromString(raw)
        except DecodeError:
            log.warning("kgrpc: undecodable reply envelope at offset %d", m.offset())
            return
        if not env.id.startswith(self._id_prefix):
            return  # a reply to another client reading this partition
        with self._lock:
            p = self._pending.get(env.id)
        if p is None:
            return  # a late reply
        value = m.value() or b""
        if self.guard is not None:
            try:
                value = self.guard.open_reply(p.method, m.topic() or "", m.key(), headers, value)
            except NotAuthentic as e:
                log.warning("kgrpc: ignoring a reply that is not authentic: %s", e)
                return
        with self._lock:
            if self._pending.pop(env.id, None) is None:
                return
        p.envelope, p.value = env, value
        p.done.set()
