"""The subscriber's retries and dead letters (docs/wire.md, sections 8 and 5),
against the Go shop on its embedded broker (kfake only: one record here is
larger than a real broker's default limit allows a dead letter to be).

Poison records are produced straight onto shop.users.v1.UserCreated beside
the shop's own events, all with one key so that they share a partition and
its order: an undecodable value, a wrong ev-type, an unsigned and a forged
record, a record too large to copy whole, an event whose handler always
fails and one whose handler fails once. The dead letters are read back from
the group's dead-letter topic, and listed with the Go CLI (kgrpc dlq list).
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message as KafkaMessage, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import Shop, kgrpc_bin
from kgrpc import Client, DeadLetterError, EventInfo, Guard, Subscriber
from kgrpc.client import ensure_topic
from kgrpc.deadletter import MAX_STUB_HEADERS, MAX_STUB_KEY, DeadLetter
from shop.users.v1 import events_pb2 as user_events
from test_shop import new_user

EVENT = "shop.users.v1.UserCreated"
WAIT = 30.0  # the longest any step waits for one thing
ATTEMPTS = 3  # the tests' event_attempts (the default is 4)
BIG = 1_020_000  # a value above librdkafka's message.max.bytes (1000000), below kfake's (1048588)

Headers = list[tuple[str, bytes]]


@dataclass
class Injected:
    name: str
    key: bytes
    value: bytes
    headers: Headers
    partition: int = -1
    offset: int = -1


@dataclass
class Seen:
    """What a subscriber's handler and on_invalid hook saw, by user id / offset."""

    runs: dict[str, list[int]] = field(default_factory=dict)  # user id -> attempts
    invalid: dict[int, str] = field(default_factory=dict)  # offset -> error (records of our key)
    lock: threading.Lock = field(default_factory=threading.Lock)


def produce(brokers: str, topic: str, records: list[Injected]) -> None:
    """Produces records in order (one key: one partition) and notes where each landed."""
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all",
                  "message.max.bytes": 1_048_000, "linger.ms": 0})
    errors: list[str] = []
    for r in records:
        def delivered(err: KafkaError | None, m: KafkaMessage, r: Injected = r) -> None:
            if err is not None:
                errors.append(f"{r.name}: {err}")
            else:
                r.partition, r.offset = m.partition() or 0, m.offset() or 0
        p.produce(topic, key=r.key, value=r.value, headers=list[tuple[str, str | bytes | None]](r.headers), on_delivery=delivered)
    assert p.flush(WAIT) == 0, "injected records not acknowledged"
    assert not errors, errors
    assert len({r.partition for r in records}) == 1


def read_topic(brokers: str, topic: str, want: Callable[[KafkaMessage], bool], n: int, timeout: float = WAIT) -> list[KafkaMessage]:
    """The first n records of topic (every partition from its start) that want accepts."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": "py-read-" + uuid.uuid4().hex[:8], "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
        out: list[KafkaMessage] = []
        end = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None and want(m):
                out.append(m)
        return out
    finally:
        c.close()


def hdrs(m: KafkaMessage) -> Headers:
    return [(h[0], h[1] if isinstance(h[1], bytes) else (h[1] or "").encode()) for h in m.headers() or []]


def make_subscriber(shop: Shop, group: str, seen: Seen, key: bytes, **kw: object) -> Subscriber:
    def handle(ev: user_events.UserCreated, info: EventInfo) -> None:
        with seen.lock:
            seen.runs.setdefault(ev.user_id, []).append(info.attempt)
        if ev.user_id.startswith("always-"):
            raise RuntimeError("always fails")
        if ev.user_id.startswith("once-") and info.attempt == 1:
            raise ConnectionError("fails once")

    def invalid(m: KafkaMessage, e: Exception) -> None:
        if m.key() == key:
            with seen.lock:
                seen.invalid[m.offset() or 0] = str(e)

    sub = Subscriber(shop.brokers, group, guard=Guard.from_dir(shop.key_dir, "gateway"), topic_prefix=shop.topic_prefix,
                     event_attempts=ATTEMPTS, event_backoff=0.01, event_max_backoff=0.02, on_invalid=invalid,
                     **kw)  # type: ignore[arg-type]
    sub.subscribe(user_events.UserCreated, handle)
    return sub


def run_until(sub: Subscriber, done: Callable[[], bool], what: str) -> None:
    """Runs sub in a thread until done(), at most WAIT seconds, then stops it (and re-raises its error)."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            sub.run(stop, 0.05)
        except BaseException as e:
            failed.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    end = time.monotonic() + WAIT
    while not done() and not failed and time.monotonic() < end:
        time.sleep(0.02)
    stop.set()
    t.join(10)
    assert not t.is_alive(), "the subscriber did not stop"
    if failed:
        raise failed[0]
    assert done(), f"{what} within {WAIT}s"


@dataclass
class Scenario:
    shop: Shop
    group: str  # without the prefix
    dlq: str
    topic: str
    key: bytes
    records: dict[str, Injected]
    seen: Seen
    real_user: str
    dead: list[KafkaMessage]
    again: Seen  # a second subscriber of the same group


@pytest.fixture(scope="module")
def scenario(embedded_shop: Shop) -> Iterator[Scenario]:
    shop = embedded_shop
    run = uuid.uuid4().hex[:8]
    key = f"py-dlq-{run}".encode()
    topic = shop.topic_prefix + EVENT
    group = f"py-dlq-{run}"
    usersvc = Guard.from_dir(shop.key_dir, "usersvc")  # the event's owner, whose signature the subscriber checks

    def event(name: str, *, ev_type: str = EVENT, value: bytes | None = None, signer: Guard | None = usersvc,
              signed_value: bytes | None = None) -> Injected:
        ev = user_events.UserCreated(user_id=f"{name}-{run}", email=f"{name}@example.com", display_name=name)
        v = ev.SerializeToString() if value is None else value
        hs: Headers = [("ev-type", ev_type.encode()), ("ev-id", f"py-{run}-{name}".encode()), ("x-test", b"")]
        if signer is not None:
            hs = signer.sign_event(EVENT, topic, key, hs, v if signed_value is None else signed_value)
        return Injected(name, key, v, hs)

    records = [
        event("undecodable", value=b"\x0a\x05ab"),  # field 1, 5 bytes long, 2 there
        event("wrongtype", ev_type="shop.users.v1.NotThisEvent"),
        event("unsigned", signer=None),
        event("forged", signed_value=user_events.UserCreated(user_id="someone else").SerializeToString()),
        event("big", value=b"\xff" * BIG),  # undecodable, and too large for a whole dead letter
        event("always"),
        event("once"),
        event("good"),
    ]
    seen = Seen()
    client = Client(shop.brokers, guard=Guard.from_dir(shop.key_dir, "gateway"), topic_prefix=shop.topic_prefix,
                    default_timeout=WAIT)
    try:
        sub = make_subscriber(shop, group, seen, key)
        try:
            sub.start()  # creates the dead-letter topic
            produce(shop.brokers, topic, records)
            user, _ = new_user(client)  # a real event, published by the shop after the poison
            run_until(sub, lambda: f"good-{run}" in seen.runs and user.id in seen.runs, "the good events after the poison")
        finally:
            sub.close()
        dlq = shop.topic_prefix + group + ".dlq"
        assert sub.dead_letter_topic == dlq
        dead = read_topic(shop.brokers, dlq, lambda m: m.key() == key, 6)

        # A second subscriber of the group: it starts after the committed offsets.
        again = Seen()
        sub2 = make_subscriber(shop, group, again, key)
        try:
            sub2.start()
            produce(shop.brokers, topic, [event("late")])
            run_until(sub2, lambda: f"late-{run}" in again.runs, "an event after the second subscriber joined")
        finally:
            sub2.close()
        yield Scenario(shop, group, dlq, topic, key, {r.name: r for r in records}, seen, user.id, dead, again)
    finally:
        client.close()


def dlq_headers(s: Scenario, r: Injected, error: str, attempts: int) -> Headers:
    return [("dlq-error", error.encode()), ("dlq-attempts", str(attempts).encode()), ("dlq-topic", s.topic.encode()),
            ("dlq-partition", str(r.partition).encode()), ("dlq-offset", str(r.offset).encode()),
            ("dlq-group", (s.shop.topic_prefix + s.group).encode())]


def dead_letter_of(s: Scenario, r: Injected) -> KafkaMessage:
    found = [m for m in s.dead if dict(hdrs(m)).get("dlq-offset") == str(r.offset).encode()]
    assert len(found) == 1, f"{r.name}: {len(found)} dead letters (of {len(s.dead)})"
    return found[0]


def test_poison_records_are_dead_lettered_whole(scenario: Scenario) -> None:
    s = scenario
    assert len(s.dead) == 6, [dict(hdrs(m)).get("dlq-error") for m in s.dead]
    want_errors = {
        "undecodable": f"undecodable event: {EVENT}: ",
        "wrongtype": f'undecodable event: record of type "shop.users.v1.NotThisEvent" on the topic of {EVENT}',
        "unsigned": "event not authentic: no kgrpc-sig header last",
        "forged": "event not authentic: event shop.users.v1.UserCreated from unit usersvc: bad signature",
        "always": "RuntimeError: always fails",
    }
    for name, prefix in want_errors.items():
        r = s.records[name]
        m = dead_letter_of(s, r)
        got = hdrs(m)
        error = dict(got)["dlq-error"].decode()
        assert error.startswith(prefix), (name, error)
        attempts = ATTEMPTS if name == "always" else 1
        assert got == r.headers + dlq_headers(s, r, error, attempts), name  # the original headers, then the dlq- ones, in order
        assert m.key() == r.key and m.value() == r.value, name


def test_too_large_record_is_dead_lettered_as_a_stub(scenario: Scenario) -> None:
    s = scenario
    r = s.records["big"]
    m = dead_letter_of(s, r)
    got = hdrs(m)
    error = dict(got)["dlq-error"].decode()
    assert error.startswith(f"undecodable event: {EVENT}: "), error
    assert got == r.headers + dlq_headers(s, r, error, 1) + [("dlq-stub", b"true"), ("dlq-size", str(BIG).encode())]
    assert m.key() == r.key and not m.value()


def test_handlers_and_hooks(scenario: Scenario) -> None:
    s = scenario
    run = s.key.decode().removeprefix("py-dlq-")
    assert s.seen.runs[f"always-{run}"] == list(range(1, ATTEMPTS + 1))
    assert s.seen.runs[f"once-{run}"] == [1, 2], "a transient failure is retried, and not dead-lettered"
    assert s.seen.runs[f"good-{run}"] == [1]
    assert s.seen.runs[s.real_user] == [1], "the shop's own event after the poison"
    for name in ("undecodable", "wrongtype", "unsigned", "forged", "big"):
        assert f"{name}-{run}" not in s.seen.runs, f"{name} reached the handler"
    assert sorted(s.seen.invalid) == sorted(s.records[n].offset for n in ("undecodable", "wrongtype", "unsigned", "forged", "big"))


def test_offsets_are_committed(scenario: Scenario) -> None:
    s = scenario
    run = s.key.decode().removeprefix("py-dlq-")
    ours = {u for u in s.again.runs if u.endswith(run)}
    assert ours == {f"late-{run}"}, "the second subscriber of the group saw records the first one finished"
    assert not s.again.invalid
    assert len(read_topic(s.shop.brokers, s.dlq, lambda m: m.key() == s.key, 7, timeout=2)) == 6, "a record dead-lettered twice"


def test_kgrpc_dlq_list_reads_them(scenario: Scenario) -> None:
    """The Go CLI lists the Python subscriber's dead letters: the format is the one Go reads."""
    s = scenario
    args = [kgrpc_bin(), "--brokers", s.shop.brokers, "--timeout", "10s"]
    if s.shop.topic_prefix:
        args += ["--topic-prefix", s.shop.topic_prefix]
    out = subprocess.run(args + ["dlq", "list", s.group], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    got = {ln["source"]["offset"]: ln for ln in lines if ln["key"] == s.key.decode()}
    assert len(got) == 6, out.stdout
    for name in ("undecodable", "wrongtype", "unsigned", "forged", "big", "always"):
        r = s.records[name]
        ln = got[r.offset]
        assert ln["source"] == {"topic": s.topic, "partition": r.partition, "offset": r.offset}, ln
        assert ln["group"] == s.shop.topic_prefix + s.group and ln["type"] == ("shop.users.v1.NotThisEvent" if name == "wrongtype" else EVENT)
        assert ln["attempts"] == (ATTEMPTS if name == "always" else 1), ln
        assert ln["error"] and ln["error"] == dict(hdrs(dead_letter_of(s, r)))["dlq-error"].decode(), ln
        assert ln["stub"] == (name == "big") and ln["size"] == len(r.value), ln


def test_dead_letter_not_acknowledged_leaves_the_record(embedded_shop: Shop) -> None:
    """No dead-letter topic (create_topics=False): dead-lettering fails, poll raises, and the record is
    neither committed nor skipped."""
    shop = embedded_shop
    prefix = f"pynodlq{uuid.uuid4().hex[:6]}."
    topic = prefix + EVENT
    ensure_topic(AdminClient({"bootstrap.servers": shop.brokers}), topic, 1, {}, WAIT)
    bad = Injected("bad", b"k", b"\x0a\x05ab", [("ev-type", EVENT.encode())])
    good = Injected("good", b"k", user_events.UserCreated(user_id="after").SerializeToString(), [("ev-type", EVENT.encode())])
    produce(shop.brokers, topic, [bad, good])
    handled: list[str] = []

    def subscriber(create: bool) -> Subscriber:
        sub = Subscriber(shop.brokers, "g", topic_prefix=prefix, create_topics=create, dead_letter_timeout=1.5)
        sub.subscribe(user_events.UserCreated, lambda ev, _info: handled.append(ev.user_id))
        return sub

    sub = subscriber(False)
    try:
        for _ in range(2):  # rewound: the same record again, not the next one
            with pytest.raises(DeadLetterError) as e:
                end = time.monotonic() + WAIT
                while time.monotonic() < end:
                    sub.poll(0.2)
            assert (e.value.topic, e.value.partition, e.value.offset) == (topic, bad.partition, bad.offset), e.value
            assert e.value.dlq_topic == prefix + "g.dlq" and "undecodable event" in e.value.cause
        assert handled == []
    finally:
        t0 = time.monotonic()
        sub.close(0.5)  # drops the dead letters still queued for the missing topic
    assert time.monotonic() - t0 < 5, "close waited for the unacknowledged dead letters"
    with subscriber(True) as sub:  # with its dead-letter topic, the record is given up and the next one handled
        assert sub.run_until(lambda: handled == ["after"], WAIT)
    dead = read_topic(shop.brokers, prefix + "g.dlq", lambda m: True, 1)
    assert len(dead) == 1
    got = dict(hdrs(dead[0]))
    assert got["dlq-offset"] == str(bad.offset).encode() and got["dlq-group"] == (prefix + "g").encode(), got
    assert got["dlq-topic"] == topic.encode() and got["dlq-attempts"] == b"1", got


def test_stop_during_backoff_leaves_the_record(embedded_shop: Shop) -> None:
    """Setting run()'s stop during a retry's backoff returns at once, the record uncommitted."""
    shop = embedded_shop
    prefix = f"pystop{uuid.uuid4().hex[:6]}."
    topic = prefix + EVENT
    ensure_topic(AdminClient({"bootstrap.servers": shop.brokers}), topic, 1, {}, WAIT)
    produce(shop.brokers, topic, [Injected("e", b"k", user_events.UserCreated(user_id="u1").SerializeToString(),
                                           [("ev-type", EVENT.encode())])])
    runs: list[int] = []

    def failing(_ev: user_events.UserCreated, info: EventInfo) -> None:
        runs.append(info.attempt)
        raise RuntimeError("not now")

    sub = Subscriber(shop.brokers, "g", topic_prefix=prefix, event_backoff=60, event_max_backoff=60)
    sub.subscribe(user_events.UserCreated, failing)
    stop = threading.Event()
    t = threading.Thread(target=sub.run, args=(stop,), daemon=True)
    try:
        t.start()
        end = time.monotonic() + WAIT
        while not runs and time.monotonic() < end:
            time.sleep(0.02)
        assert runs == [1]
        stop.set()
        t.join(5)
        assert not t.is_alive(), "run() went on waiting out the backoff"
    finally:
        stop.set()
        t.join(5)
        sub.close()
    handled: list[str] = []
    with Subscriber(shop.brokers, "g", topic_prefix=prefix) as sub2:
        sub2.subscribe(user_events.UserCreated, lambda ev, _info: handled.append(ev.user_id))
        assert sub2.run_until(lambda: handled == ["u1"], WAIT), "the record was committed"
    assert read_topic(shop.brokers, prefix + "g.dlq", lambda m: True, 1, timeout=1) == []


def test_invalid_options() -> None:
    for kw in ({"event_attempts": 0}, {"event_attempts": 1.5}, {"event_attempts": True}, {"event_backoff": 0},
               {"event_backoff": -1}, {"event_backoff": math.nan}, {"event_backoff": math.inf},
               {"event_backoff": 2, "event_max_backoff": 1}, {"event_max_backoff": math.inf},
               {"dead_letter_timeout": 0}, {"dead_letter_timeout": math.nan}):
        with pytest.raises(ValueError):
            Subscriber("127.0.0.1:1", "g", **kw)
    s = Subscriber("127.0.0.1:1", "g", topic_prefix="p.", event_attempts=1, event_backoff=1, event_max_backoff=1)
    assert s.dead_letter_topic == "p.g.dlq" and s.event_attempts == 1
    d = Subscriber("127.0.0.1:1", "g")
    assert (d.event_attempts, d.event_backoff, d.event_max_backoff, d.dead_letter_timeout) == (4, 0.1, 5.0, 30.0), "Go's defaults"


def test_stub_bounds() -> None:
    """A stub keeps the key and headers only within their bounds (kafkatransport/deadletter.go)."""
    big_key, big_hs = b"k" * (MAX_STUB_KEY + 1), [("h", b"x" * MAX_STUB_HEADERS)]
    dl = DeadLetter("t.dlq", "t", 2, 7, big_key, b"vv", big_hs, "e" * 5000, 1, "g")
    key, value, hs = dl.record(stub=True)
    assert key is None and value is None
    assert hs == [("dlq-key-size", str(len(big_key)).encode()), ("dlq-headers-size", str(MAX_STUB_HEADERS + 1).encode()),
                  ("dlq-error", b"e" * 4096), ("dlq-attempts", b"1"), ("dlq-topic", b"t"), ("dlq-partition", b"2"),
                  ("dlq-offset", b"7"), ("dlq-group", b"g"), ("dlq-stub", b"true"), ("dlq-size", b"2")]
    key, value, hs = dl.record()
    assert key == big_key and value == b"vv" and hs[0] == big_hs[0] and hs[1][0] == "dlq-error"
