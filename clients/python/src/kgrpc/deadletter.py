"""Dead letters: a record a consumer group gives up, copied to "<group>.dlq"
(docs/wire.md, section 5; the Go side is kafkatransport/deadletter.go).

A dead letter is first produced whole: the original key, value and headers,
then the headers dlq-error, dlq-attempts, dlq-topic, dlq-partition,
dlq-offset and dlq-group (numbers in decimal text). When the whole copy
cannot be produced (too large, invalid, refused by the topic, or not
acknowledged after 3 attempts within half the budget), a stub is produced
instead: no value, the original key only when it is at most 4096 bytes
(else no key and dlq-key-size), the original headers only when their names
and values total at most 65536 bytes (else none and dlq-headers-size), the
six headers above, then dlq-stub "true" and dlq-size (the value's size).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from kgrpc import wire

log = logging.getLogger("kgrpc")

# The bounds of kafkatransport/deadletter.go.
DEAD_LETTER_BUDGET = 30.0  # seconds for one record: the whole copy may take half, the stub the rest
DEAD_LETTER_ATTEMPTS = 3  # produce attempts of the whole copy, and again of the stub
MAX_STUB_KEY = 4 << 10
MAX_STUB_HEADERS = 64 << 10
MAX_DLQ_ERROR = 4 << 10

RawHeader = tuple[str, bytes | None]

# The errors that producing the same record again cannot fix (the Go transport's permanent()).
# A missing topic is not one: it may come back, or its metadata may still be spreading.
_PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_MSG, KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION,
    KafkaError.POLICY_VIOLATION,
})

NOT_ACKNOWLEDGED = "dead letter not acknowledged in time"


class DeadLetterError(Exception):
    """A record could not be dead-lettered: neither its whole copy nor its stub was acknowledged.

    The record is not finished: its offset is not committed, so it is
    delivered again.
    """

    def __init__(self, topic: str, partition: int, offset: int, dlq_topic: str, reason: str, cause: str) -> None:
        super().__init__(f"dead letter of {topic}/{partition}@{offset} to {dlq_topic} not produced: {reason} "
                         f"(the record was given up for: {cause})")
        self.topic, self.partition, self.offset, self.dlq_topic = topic, partition, offset, dlq_topic
        self.reason, self.cause = reason, cause


@dataclass(frozen=True)
class DeadLetter:
    """A record to copy to a dead-letter topic, and why."""

    dlq_topic: str
    topic: str  # where the record is
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[RawHeader]
    error: str  # why it was given up
    attempts: int  # handler runs; 1 for a record no handler ran for
    group: str  # the consumer group giving it up, prefix included

    def record(self, stub: bool = False) -> tuple[bytes | None, bytes | None, list[RawHeader]]:
        """The dead letter's key, value and headers: a copy of the record, or with stub its stub."""
        hs: list[RawHeader] = []
        key: bytes | None = None
        value: bytes | None = None
        if not stub:
            key, value = self.key, self.value
            hs.extend(self.headers)
        else:
            if self.key is None or len(self.key) <= MAX_STUB_KEY:
                key = self.key
            else:
                hs.append((wire.HDR_DLQ_KEY_SIZE, _itoa(len(self.key))))
            n = headers_size(self.headers)
            if n <= MAX_STUB_HEADERS:
                hs.extend(self.headers)
            else:
                hs.append((wire.HDR_DLQ_HEADERS_SIZE, _itoa(n)))
        hs += [
            (wire.HDR_DLQ_ERROR, self.error.encode("utf-8", "replace")[:MAX_DLQ_ERROR]),
            (wire.HDR_DLQ_ATTEMPTS, _itoa(self.attempts)),
            (wire.HDR_DLQ_TOPIC, self.topic.encode()),
            (wire.HDR_DLQ_PARTITION, _itoa(self.partition)),
            (wire.HDR_DLQ_OFFSET, _itoa(self.offset)),
            (wire.HDR_DLQ_GROUP, self.group.encode()),
        ]
        if stub:
            hs += [(wire.HDR_DLQ_STUB, b"true"), (wire.HDR_DLQ_SIZE, _itoa(len(self.value or b"")))]
        return key, value, hs


def _itoa(n: int) -> bytes:
    return str(n).encode()


def headers_size(hs: Sequence[RawHeader]) -> int:
    """The bytes of the names and values of hs."""
    return sum(len(k.encode()) + len(v or b"") for k, v in hs)


def _permanent(err: KafkaError | str) -> bool:
    return isinstance(err, KafkaError) and err.code() in _PERMANENT


def _text(err: KafkaError | str) -> str:
    return err if isinstance(err, str) else err.str()


class DeadLetterer:
    """Produces dead letters with producer and waits for the broker's acknowledgement."""

    def __init__(self, producer: Producer, budget: float = DEAD_LETTER_BUDGET) -> None:
        if not budget > 0:
            raise ValueError(f"dead-letter timeout {budget!r}: want a positive number of seconds")
        self.producer = producer
        self.budget = budget

    def send(self, dl: DeadLetter) -> str:
        """Produces dl whole if the broker takes it, else its stub, within the budget; returns "whole"
        or "stub", or raises DeadLetterError when neither was acknowledged."""
        start = time.monotonic()
        where = f"{dl.topic}/{dl.partition}@{dl.offset}"
        err = self._attempt(dl.dlq_topic, dl.record(False), start + self.budget / 2)
        if err is None:
            log.error("kgrpc: record %s dead-lettered to %s: %s", where, dl.dlq_topic, dl.error)
            return "whole"
        log.warning("kgrpc: record %s not dead-lettered whole (%s); producing a stub", where, _text(err))
        err = self._attempt(dl.dlq_topic, dl.record(True), start + self.budget)
        if err is None:
            log.error("kgrpc: record %s dead-lettered to %s as a stub (value of %d bytes): %s", where, dl.dlq_topic,
                      len(dl.value or b""), dl.error)
            return "stub"
        raise DeadLetterError(dl.topic, dl.partition, dl.offset, dl.dlq_topic, _text(err), dl.error)

    def _attempt(self, topic: str, rec: tuple[bytes | None, bytes | None, list[RawHeader]], deadline: float) -> KafkaError | str | None:
        """Produces rec at most DEAD_LETTER_ATTEMPTS times, backing off from 250ms, until the broker
        acknowledges it, a permanent error or deadline; returns the last error. Each attempt waits
        for its acknowledgement at most its share of the time left."""
        backoff = 0.25
        share = max(0.0, deadline - time.monotonic()) / DEAD_LETTER_ATTEMPTS
        n = 1
        while True:
            err = self._produce_once(topic, rec, min(deadline, time.monotonic() + share))
            if err is None or _permanent(err) or n == DEAD_LETTER_ATTEMPTS:
                return err
            wait = min(backoff, deadline - time.monotonic())
            if wait <= 0:
                return err
            time.sleep(wait)
            backoff *= 2
            n += 1

    def _produce_once(self, topic: str, rec: tuple[bytes | None, bytes | None, list[RawHeader]],
                      deadline: float) -> KafkaError | str | None:
        """Produces rec and waits until deadline for its delivery report. A record not acknowledged
        in time may still be delivered later."""
        key, value, headers = rec
        got: list[KafkaError | None] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            got.append(err)

        try:
            self.producer.produce(topic, value=value, key=key, headers=list[tuple[str, str | bytes | None]](headers),
                                  on_delivery=delivered)
        except KafkaException as e:  # too large for message.max.bytes, an unknown topic, ...
            arg = e.args[0] if e.args else None
            return arg if isinstance(arg, KafkaError) else str(e)
        except BufferError as e:  # the producer's queue is full
            return f"producer queue full: {e}"
        while not got:
            left = deadline - time.monotonic()
            if left <= 0:
                return NOT_ACKNOWLEDGED
            self.producer.poll(min(left, 0.1))
        return got[0]
