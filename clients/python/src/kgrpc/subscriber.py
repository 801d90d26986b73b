"""The event subscriber: a consumer group on event topics (kafkatransport/doc.go, Event record)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, Message as KafkaMessage
from confluent_kafka.admin import AdminClient
from google.protobuf.message import DecodeError, Message

from kgrpc import wire
from kgrpc.client import _headers, ensure_topic
from kgrpc.trust import Guard, NotAuthentic

log = logging.getLogger("kgrpc")

E = TypeVar("E", bound=Message)


@dataclass(frozen=True)
class EventInfo:
    """Where an event came from."""

    type: str  # ev-type
    id: str  # ev-id
    topic: str
    partition: int
    offset: int
    key: bytes | None
    producer: str | None  # the unit whose signature verified, with a Guard
    headers: list[tuple[str, bytes]]


@dataclass
class _Handler(Generic[E]):
    cls: type[E]
    fn: Callable[[E, EventInfo], None]


class Subscriber:
    """Consumes events in a consumer group, decoding each record by its ev-type
    header into the generated class its handler was registered with, and
    committing its offset once the handler returned.

    With a Guard, a record whose signature does not verify is not handed to
    any handler: on_invalid gets it (default: log), and its offset is
    committed, as the Go subscriber commits a dead-lettered record. A handler
    that raises stops poll() with that exception, the record uncommitted, so
    it is delivered again. (The Go subscriber's retries and dead-letter topic
    are not implemented here.)
    """

    def __init__(self, brokers: str, group: str, *, guard: Guard | None = None, topic_prefix: str = "",
                 kafka_config: Mapping[str, Any] | None = None, create_topics: bool = True,
                 on_invalid: Callable[[KafkaMessage, Exception], None] | None = None) -> None:
        if not group:
            raise ValueError("empty consumer group")
        self.guard = guard
        self.prefix = topic_prefix
        self.group = topic_prefix + group
        self.create_topics = create_topics
        self.on_invalid = on_invalid or (lambda m, e: log.warning("kgrpc: skipping event at %s/%d@%d: %s", m.topic(), m.partition(), m.offset(), e))
        self._base: dict[str, Any] = {"bootstrap.servers": brokers, "reconnect.backoff.max.ms": 1000, **(kafka_config or {})}
        self._handlers: dict[str, _Handler[Any]] = {}
        self._topics: dict[str, str] = {}  # topic -> event name
        self._consumer: Consumer | None = None

    def subscribe(self, cls: type[E], fn: Callable[[E, EventInfo], None]) -> None:
        """Handles the events of message class cls (an event: it has the (kgrpc.kafka.v1.event) option)."""
        if self._consumer is not None:
            raise RuntimeError("subscribe before the first poll")
        spec = wire.event_spec(cls)
        self._handlers[spec.name] = _Handler(cls, fn)
        self._topics[self.prefix + spec.topic] = spec.name

    def start(self, timeout: float = 30.0) -> None:
        """Creates the missing event topics and joins the group (poll calls it)."""
        if self._consumer is not None:
            return
        if not self._handlers:
            raise RuntimeError("no handler subscribed")
        if self.create_topics:
            admin = AdminClient(self._base)
            for t in self._topics:
                ensure_topic(admin, t, wire.DEFAULT_PARTITIONS, {}, timeout)
        self._consumer = Consumer({**self._base, "group.id": self.group, "auto.offset.reset": "earliest",
                                   "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
                                   "session.timeout.ms": 6000, "fetch.wait.max.ms": 100})
        self._consumer.subscribe(list(self._topics))

    def poll(self, timeout: float = 1.0) -> bool:
        """Handles at most one record; reports whether one was read."""
        self.start()
        assert self._consumer is not None
        m = self._consumer.poll(timeout)
        if m is None:
            return False
        if m.error() is not None:
            log.debug("kgrpc subscriber: %s", m.error())
            return False
        self._handle(m)
        self._consumer.commit(message=m, asynchronous=False)
        return True

    def run(self, stop: threading.Event, poll_timeout: float = 0.2) -> None:
        """Polls until stop is set."""
        while not stop.is_set():
            self.poll(poll_timeout)

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Polls until done() or timeout seconds; reports done()."""
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                return False
            self.poll(min(0.5, max(0.0, end - time.monotonic())))
        return True

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, m: KafkaMessage) -> None:
        headers = _headers(m)
        hs = dict(headers)
        topic = m.topic() or ""
        name = hs.get(wire.HDR_EVENT_TYPE, b"").decode("utf-8", "replace")
        want = self._topics.get(topic)
        if name != want or want not in self._handlers:
            self.on_invalid(m, ValueError(f"ev-type {name!r} on topic {topic} of {want}"))
            return
        h = self._handlers[name]
        value = m.value() or b""
        producer = None
        if self.guard is not None:
            try:
                producer = self.guard.open_event(name, topic, m.key(), headers, value)
            except NotAuthentic as e:
                self.on_invalid(m, e)
                return
        ev = h.cls()
        try:
            ev.ParseFromString(value)
        except DecodeError as e:
            self.on_invalid(m, e)
            return
        info = EventInfo(name, hs.get(wire.HDR_EVENT_ID, b"").decode("utf-8", "replace"), topic, m.partition() or 0,
                         m.offset() or 0, m.key(), producer, headers)
        h.fn(ev, info)
