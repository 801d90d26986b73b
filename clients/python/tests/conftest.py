"""Runs the Go shop (cmd/platform) for the tests: on its embedded broker, and
on the real Kafka cluster of KAFKA_BROKERS for the tests marked real_kafka."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(os.environ.get("REPO_ROOT") or Path(__file__).resolve().parents[3])
START_TIMEOUT = 60.0  # the platform's start, broker included


@dataclass
class Shop:
    """A running cmd/platform."""

    brokers: str
    data_dir: Path
    api: str  # http://host:port of the gateway
    topic_prefix: str
    real_kafka: bool

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"


def _go_bin(name: str, env: str) -> str:
    """The Go binary cmd/<name>: the path in environment variable env, else built into .bin."""
    b = os.environ.get(env)
    if b:
        return b
    out = REPO / ".bin" / name
    subprocess.run(["go", "build", "-o", str(out), f"./cmd/{name}"], cwd=REPO, check=True, timeout=600)
    return str(out)


def _platform_bin() -> str:
    return _go_bin("platform", "PLATFORM_BIN")


def kgrpc_bin() -> str:
    """cmd/kgrpc, the Go CLI (KGRPC_BIN, else built into .bin)."""
    return _go_bin("kgrpc", "KGRPC_BIN")


def _start(brokers: str | None) -> Iterator[Shop]:
    data = Path(tempfile.mkdtemp(prefix="kgrpc-py-shop-"))
    prefix = "" if brokers is None else f"py{uuid.uuid4().hex[:8]}."
    args = [_platform_bin(), "--data-dir", str(data), "--http-addr", "127.0.0.1:0", "--log-format", "text",
            "--instance-id", "pyshop"]
    if brokers is not None:
        args += ["--brokers", brokers, "--topic-prefix", prefix]
    log_path = data.parent / (data.name + ".log")
    log = open(log_path, "w+b")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data.parent, start_new_session=False)
    api = None
    try:
        end = time.monotonic() + START_TIMEOUT
        while api is None:
            if proc.poll() is not None:
                raise RuntimeError(f"cmd/platform exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"cmd/platform not ready within {START_TIMEOUT}s:\n{log_path.read_text()[-4000:]}")
            m = re.search(r'msg="platform ready" api=(http://\S+)', log_path.read_text(errors="replace"))
            if m:
                api = m.group(1)
            else:
                time.sleep(0.1)
        if brokers is None:
            brokers = (data / "broker-addr").read_text().strip()
        yield Shop(brokers, data, api, prefix, brokers is not None and prefix != "")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        if os.environ.get("KGRPC_KEEP_SHOP_LOG"):
            print(f"cmd/platform log: {log_path}")
        else:
            log_path.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)
        if prefix and brokers:
            _delete_topics(brokers, prefix)


def _delete_topics(brokers: str, prefix: str) -> None:
    """Deletes the run's topics: a real broker outlives its tests (as kafkatest.CleanupTopics)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for f in admin.delete_topics(names, operation_timeout=10).values():
            try:
                f.result(15)
            except Exception as e:  # best effort
                print(f"delete topic: {e}")


@pytest.fixture(scope="session")
def embedded_shop() -> Iterator[Shop]:
    yield from _start(None)


@pytest.fixture(scope="session")
def real_shop() -> Iterator[Shop]:
    brokers = os.environ.get("KAFKA_BROKERS")
    if not brokers:
        pytest.fail("KAFKA_BROKERS is unset: deselect the real_kafka tests with -m 'not real_kafka'")
    yield from _start(brokers)


@pytest.fixture(scope="session", params=["embedded", pytest.param("real", marks=pytest.mark.real_kafka)])
def shop(request: pytest.FixtureRequest) -> Shop:
    """The shop on the embedded broker, and (marked real_kafka) on KAFKA_BROKERS."""
    name = "embedded_shop" if request.param == "embedded" else "real_shop"
    s: Shop = request.getfixturevalue(name)
    return s

