"""The event subscriber: a consumer group on event topics, with retries and a dead-letter topic
(docs/wire.md, sections 8 and 5; the Go side is kafkatransport/subscriber.go)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, Message as KafkaMessage, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from google.protobuf.message import DecodeError, Message

from kgrpc import wire
from kgrpc.client import _headers, ensure_topic
from kgrpc.deadletter import DEAD_LETTER_BUDGET, DeadLetter, DeadLetterer, DeadLetterError, RawHeader
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
    attempt: int = 1  # the handler runs for this record so far, this one included


# The defaults of the Go subscriber (kafkatransport/config.go, WithEventRetry).
DEFAULT_EVENT_ATTEMPTS = 4
DEFAULT_EVENT_BACKOFF = 0.1  # seconds before the first retry, doubling
DEFAULT_EVENT_MAX_BACKOFF = 5.0


@dataclass
class _Handler(Generic[E]):
    cls: type[E]
    fn: Callable[[E, EventInfo], None]


class Subscriber:
    """Consumes events in a consumer group (docs/wire.md, section 8), decoding each record into the
    generated class its topic's handler was registered with, as the Go subscriber does
    (kafkatransport/subscriber.go).

    Each record is read in its partition's order and finished before the next one:

    - With a Guard, a record whose signature does not verify is not handed to
      its handler: it is dead-lettered at once, with dlq-attempts 1 and
      dlq-error "event not authentic: ...".
    - A record whose value does not decode as the topic's event, or whose
      ev-type header names another message, is dead-lettered at once, with
      dlq-attempts 1 and dlq-error "undecodable event: ...".
    - A handler that raises (an Exception) is run again after a backoff
      (event_backoff seconds, doubling up to event_max_backoff), at most
      event_attempts times in all; a record whose handler still raises is
      dead-lettered with dlq-attempts the number of runs and dlq-error the
      last exception. A handler that succeeds on a later attempt finishes the
      record without a dead letter; EventInfo.attempt counts the runs.

    The dead-letter topic is "<prefix><group>.dlq" (dead_letter_topic), which
    start() creates with the event topics. A dead letter is the original key,
    value and headers, then dlq-error, dlq-attempts, dlq-topic, dlq-partition,
    dlq-offset and dlq-group (docs/wire.md, section 5); a record too large to
    copy goes as a stub (no value, dlq-stub "true", dlq-size). See
    kgrpc.deadletter.

    A record's offset is committed only once it is finished: its handler
    returned, or its dead letter was acknowledged by the broker. When not even
    the stub is acknowledged within dead_letter_timeout seconds (the topic is
    missing, ACLs refuse it, the broker is away), poll() and run() raise
    DeadLetterError with the record uncommitted and the consumer rewound to
    it, so it is delivered again (its handler runs again: at least once). This
    differs from the Go subscriber, which then logs the record as lost and
    commits it. When run()'s stop is set during a retry's backoff, the record
    is left uncommitted the same way, for redelivery. Any other exception out
    of poll() (from on_invalid, a KeyboardInterrupt in a handler, a failed
    commit) also leaves the record uncommitted and rewound.

    on_invalid, when given, observes each record dead-lettered without running
    its handler (not authentic, undecodable, another ev-type) with the reason,
    before it is dead-lettered; without it such records are logged. It no
    longer replaces dead-lettering.

    poll(), run() and close() are for one thread at a time: set run()'s stop
    and let it return before close().
    """

    def __init__(self, brokers: str, group: str, *, guard: Guard | None = None, topic_prefix: str = "",
                 kafka_config: Mapping[str, Any] | None = None, create_topics: bool = True,
                 on_invalid: Callable[[KafkaMessage, Exception], None] | None = None,
                 event_attempts: int = DEFAULT_EVENT_ATTEMPTS, event_backoff: float = DEFAULT_EVENT_BACKOFF,
                 event_max_backoff: float = DEFAULT_EVENT_MAX_BACKOFF,
                 dead_letter_timeout: float = DEAD_LETTER_BUDGET) -> None:
        if not group:
            raise ValueError("empty consumer group")
        if isinstance(event_attempts, bool) or not isinstance(event_attempts, int) or event_attempts < 1:
            raise ValueError(f"event_attempts {event_attempts!r}: want an int of at least 1")
        if not (isinstance(event_backoff, (int, float)) and 0 < event_backoff < math.inf):
            raise ValueError(f"event_backoff {event_backoff!r}: want a positive, finite number of seconds")
        if not (isinstance(event_max_backoff, (int, float)) and event_backoff <= event_max_backoff < math.inf):
            raise ValueError(f"event_max_backoff {event_max_backoff!r}: want a finite number of seconds of at least "
                             f"event_backoff ({event_backoff!r})")
        if not (isinstance(dead_letter_timeout, (int, float)) and 0 < dead_letter_timeout < math.inf):
            raise ValueError(f"dead_letter_timeout {dead_letter_timeout!r}: want a positive, finite number of seconds")
        self.guard = guard
        self.prefix = topic_prefix
        self.group = topic_prefix + group
        self.create_topics = create_topics
        self.on_invalid = on_invalid
        self.event_attempts = event_attempts
        self.event_backoff = float(event_backoff)
        self.event_max_backoff = float(event_max_backoff)
        self.dead_letter_timeout = float(dead_letter_timeout)
        self._user_config: dict[str, Any] = dict(kafka_config or {})
        self._base: dict[str, Any] = {"bootstrap.servers": brokers, "reconnect.backoff.max.ms": 1000, **self._user_config}
        self._handlers: dict[str, _Handler[Any]] = {}
        self._topics: dict[str, str] = {}  # topic -> event name
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._dl: DeadLetterer | None = None

    @property
    def dead_letter_topic(self) -> str:
        """The topic this subscriber dead-letters to: "<prefix><group>.dlq"."""
        return self.group + wire.DLQ_SUFFIX

    def subscribe(self, cls: type[E], fn: Callable[[E, EventInfo], None]) -> None:
        """Handles the events of message class cls (an event: it has the (kgrpc.kafka.v1.event) option)."""
        if self._consumer is not None:
            raise RuntimeError("subscribe before the first poll")
        spec = wire.event_spec(cls)
        self._handlers[spec.name] = _Handler(cls, fn)
        self._topics[self.prefix + spec.topic] = spec.name

    def start(self, timeout: float = 30.0) -> None:
        """Creates the missing dead-letter and event topics, and joins the group (poll calls it)."""
        if self._consumer is not None:
            return
        if not self._handlers:
            raise RuntimeError("no handler subscribed")
        if self.create_topics:
            admin = AdminClient(self._base)
            for t in [self.dead_letter_topic, *self._topics]:
                ensure_topic(admin, t, wire.DEFAULT_PARTITIONS, {}, timeout)
        # The dead-letter producer: the Go transport's producer defaults; kafka_config overrides them.
        producer = Producer({"bootstrap.servers": self._base["bootstrap.servers"], "reconnect.backoff.max.ms": 1000,
                             "linger.ms": 0, "acks": "all", "enable.idempotence": False,
                             "max.in.flight.requests.per.connection": 2, "allow.auto.create.topics": False,
                             **self._user_config})
        try:
            consumer = Consumer({**self._base, "group.id": self.group, "auto.offset.reset": "earliest",
                                 "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
                                 "session.timeout.ms": 6000, "fetch.wait.max.ms": 100})
            consumer.subscribe(list(self._topics))
        except BaseException:
            producer.close()
            raise
        self._producer, self._dl, self._consumer = producer, DeadLetterer(producer, self.dead_letter_timeout), consumer

    def poll(self, timeout: float = 1.0) -> bool:
        """Handles at most one record; reports whether one was read. Raises DeadLetterError when a
        record could be neither handled nor dead-lettered (it is then delivered again)."""
        return self._poll(timeout, None)

    def run(self, stop: threading.Event, poll_timeout: float = 0.2) -> None:
        """Polls until stop is set (which also cuts a retry's backoff short, leaving that record
        uncommitted). Raises what poll() raises."""
        while not stop.is_set():
            self._poll(poll_timeout, stop)

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Polls until done() or timeout seconds; reports done()."""
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                return False
            self.poll(min(0.5, max(0.0, end - time.monotonic())))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Leaves the group and closes the consumer, then flushes (at most timeout seconds) and closes
        the dead-letter producer. Every committed offset's dead letter is acknowledged already; what
        the flush waits for are dead letters given up on as not acknowledged in time (DeadLetterError):
        those still unacknowledged after timeout are dropped, their records being uncommitted."""
        consumer, producer = self._consumer, self._producer
        self._consumer, self._producer, self._dl = None, None, None
        try:
            if consumer is not None:
                consumer.close()
        finally:
            if producer is not None:
                left = producer.flush(timeout)
                if left:
                    # Their records are uncommitted: dropping them loses nothing, and close() would
                    # otherwise wait for each until librdkafka's message.timeout.ms.
                    log.warning("kgrpc subscriber %s: %d dead letters not acknowledged at close: dropped", self.group, left)
                    producer.purge(in_queue=True, in_flight=True, blocking=False)
                    producer.flush(1.0)
                producer.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _poll(self, timeout: float, stop: threading.Event | None) -> bool:
        self.start()
        assert self._consumer is not None and self._producer is not None
        self._producer.poll(0)  # the delivery reports of dead letters given up on, and errors
        m = self._consumer.poll(timeout)
        if m is None:
            return False
        if m.error() is not None:
            log.debug("kgrpc subscriber: %s", m.error())
            return False
        try:
            finished = self._handle(m, stop)
            if finished:
                self._consumer.commit(message=m, asynchronous=False)
        except BaseException:
            self._rewind(m)
            raise
        if not finished:
            self._rewind(m)
        return True

    def _rewind(self, m: KafkaMessage) -> None:
        """Seeks back to m, so that the next poll delivers it again rather than the next record."""
        assert self._consumer is not None
        try:
            self._consumer.seek(TopicPartition(m.topic() or "", m.partition() or 0, m.offset() or 0))
        except KafkaException as e:  # revoked: its next owner starts from the committed offset
            log.warning("kgrpc subscriber: rewinding to %s/%d@%d: %s", m.topic(), m.partition(), m.offset(), e)

    def _handle(self, m: KafkaMessage, stop: threading.Event | None) -> bool:
        """Handles m with retries, or dead-letters it; reports whether it is finished (False: stop
        was set during a backoff). Raises DeadLetterError when its dead letter was not acknowledged."""
        topic = m.topic() or ""
        name = self._topics[topic]
        h = self._handlers[name]
        headers = _headers(m)
        value = m.value() or b""
        producer = None
        if self.guard is not None:  # before anything acts on the record, as in Go
            try:
                producer = self.guard.open_event(name, topic, m.key(), headers, value)
            except NotAuthentic as e:
                return self._invalid(m, f"event not authentic: {e}", e)
        try:
            h.cls().ParseFromString(value)
        except DecodeError as e:
            return self._invalid(m, f"undecodable event: {name}: {e}", e)
        ev_type = next((v for k, v in headers if k == wire.HDR_EVENT_TYPE), None)
        if ev_type is not None and ev_type != name.encode():
            text = f'undecodable event: record of type "{ev_type.decode("utf-8", "replace")}" on the topic of {name}'
            return self._invalid(m, text, ValueError(text))
        ev_id = next((v for k, v in headers if k == wire.HDR_EVENT_ID), b"")
        info = EventInfo(name, ev_id.decode("utf-8", "replace"), topic, m.partition() or 0, m.offset() or 0, m.key(),
                         producer, headers)
        backoff = self.event_backoff
        attempt = 0
        while True:
            attempt += 1
            ev = h.cls()  # decoded again for each run: a handler may have changed the last one
            ev.ParseFromString(value)
            try:
                h.fn(ev, replace(info, attempt=attempt))
                return True
            except Exception as e:
                err = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            log.warning("kgrpc subscriber: event handler failed at %s/%d@%d, attempt %d of %d: %s", topic, info.partition,
                        info.offset, attempt, self.event_attempts, err)
            if attempt >= self.event_attempts:
                break
            if stop is not None:
                if stop.wait(backoff):
                    return False
            else:
                time.sleep(backoff)
            backoff = min(backoff * 2, self.event_max_backoff)
        self._dead_letter(m, err, attempt)
        return True

    def _invalid(self, m: KafkaMessage, reason: str, e: Exception) -> bool:
        log.warning("kgrpc subscriber: dead-lettering the event at %s/%d@%d: %s", m.topic(), m.partition(), m.offset(), reason)
        if self.on_invalid is not None:
            self.on_invalid(m, e)
        self._dead_letter(m, reason, 1)
        return True

    def _dead_letter(self, m: KafkaMessage, error: str, attempts: int) -> None:
        assert self._dl is not None
        raw: list[RawHeader] = []
        for h in m.headers() or []:  # as they are: a null value stays null
            v = h[1]
            raw.append((h[0], v.encode() if isinstance(v, str) else v))
        self._dl.send(DeadLetter(self.dead_letter_topic, m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(),
                                 m.value(), raw, error, attempts, self.group))

