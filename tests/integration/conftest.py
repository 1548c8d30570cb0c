"""What the integration tests share: moto's server, the environment a local stack's Lambda workers
inherit, an in-process gateway on that environment, and `python -m infra.local.run` as a developer runs it."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

from chalicelib.settings import ENV_VARS
from infra.local.gateway import GatewayThread, RouteRegistrar, build_app
from infra.local.lambda_runtime import LambdaPool, route_table
from infra.local.run import free_port
from infra.local.tables import create_tables
from tests.conftest import REPO_ROOT

READY_LINE = "Local stack ready"
# Variables a developer's shell may carry that would point the stack somewhere else.
FOREIGN_ENV = [*ENV_VARS, "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "GATEWAY_HOST", "LOCAL_REDIS_PORT"]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@contextlib.contextmanager
def stack_environment(moto_endpoint: str, redis_url: str, **extra: str) -> Iterator[dict[str, str]]:
    """The environment the spawned Lambda workers inherit (set before the pool exists), restored after."""
    env = {
        "STAGE": "local",
        "MARKET_DATA_SOURCE": "replay",
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        **extra,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in FOREIGN_ENV:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@contextlib.contextmanager
def in_process_gateway(
    moto_endpoint: str, redis_url: str, *, registrars: Sequence[RouteRegistrar] = (), port: int = 0
) -> Iterator[GatewayThread]:
    """The template's tables on moto, an empty Redis (our own server), two Lambda workers and the gateway."""
    create_tables(boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1"), "local")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # our own server: the first quote must be a miss
    client.close()
    pool = LambdaPool(workers=2)
    try:
        with GatewayThread(build_app(route_table(), pool, registrars=registrars), port=port) as gateway:
            yield gateway
    finally:
        pool.close()


def run_env(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in FOREIGN_ENV}
    return {**env, "PYTHONUNBUFFERED": "1", **overrides}


class OutputReader:
    """Drains a process's stdout on a thread (its handlers log there too) so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, args=(process,), daemon=True)
        self._thread.start()

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.put(line)

    def banner(self, timeout: float) -> list[str]:
        """Lines up to and including the block after the ready line."""
        seen: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if "curl -H" in line:
                return seen


@dataclass(frozen=True)
class LocalRun:
    process: subprocess.Popen[str]
    gateway_port: int
    moto_port: int
    token: str  # the banner's dev token
    banner: list[str]
    stderr_path: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/api/v1/market"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/api/v1/market/ws/market-data"


@contextlib.contextmanager
def local_run(redis_url: str, workdir: Path, *, env: Mapping[str, str] | None = None) -> Iterator[LocalRun]:
    """`python -m infra.local.run` on free ports with the suite's Redis, until its ready banner; stopped as
    Ctrl-C stops it (then killed if it does not stop)."""
    gateway_port, moto_port = free_port(), free_port()
    stderr_path = workdir / "run.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.run"],
            cwd=REPO_ROOT,
            env=run_env(GATEWAY_PORT=str(gateway_port), MOTO_PORT=str(moto_port), REDIS_URL=redis_url, **(env or {})),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        try:
            banner = OutputReader(process).banner(timeout=90)
        except queue.Empty:
            pytest.fail(f"no ready banner within 90s; stderr:\n{stderr_path.read_text()}")
        assert any(READY_LINE in line for line in banner)
        token = next(line.split()[-1] for line in banner if "Dev token" in line)
        yield LocalRun(process, gateway_port, moto_port, token, banner, stderr_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
