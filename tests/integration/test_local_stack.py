"""The whole local stack over real sockets: moto's server, our redis-server, the gateway, Lambda workers.

The in-process stack is what `make run` assembles, started piece by piece so each can be torn down; the
last tests run `python -m infra.local.run` itself, as a developer would.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import localstack_client.session as localstack_session
import pytest
import redis
import requests
from moto.server import ThreadedMotoServer

from chalicelib.settings import ENV_VARS
from infra.local.gateway import GatewayThread, build_app
from infra.local.lambda_runtime import LambdaPool, route_table
from infra.local.run import free_port, port_is_free
from infra.local.tables import create_tables, table_definitions
from infra.local.token import issue_dev_token
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

READY_LINE = "Local stack ready"
# Variables a developer's shell may carry that would point the stack somewhere else.
_FOREIGN_ENV = [*ENV_VARS, "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "GATEWAY_HOST", "LOCAL_REDIS_PORT"]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def stack_env(moto_endpoint: str, redis_url: str) -> Iterator[None]:
    """The environment the spawned Lambda workers inherit (they start after this is set)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in _FOREIGN_ENV:
            patch.delenv(name, raising=False)
        for name, value in {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": redis_url,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def api(stack_env: None, moto_endpoint: str, redis_url: str) -> Iterator[str]:
    """Base URL of the REST API on a gateway listening on a free port."""
    create_tables(boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1"), "local")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # our own server: the first quote must be a miss
    client.close()
    pool = LambdaPool(workers=2)
    try:
        with GatewayThread(build_app(route_table(), pool)) as gateway:
            yield f"{gateway.url}/api/v1/market"
    finally:
        pool.close()


@pytest.fixture(scope="module")
def auth(stack_env: None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token()}"}


@pytest.mark.timeout(120)
def test_quote_is_fetched_then_served_from_cache_and_counted(api: str, auth: dict[str, str]) -> None:
    first = requests.get(f"{api}/quote/AAPL", headers=auth, timeout=30)
    assert first.status_code == 200, first.text
    quote = first.json()
    assert quote["symbol"] == "AAPL"
    assert quote["source"] == "replay"
    assert quote["cached"] is False
    assert isinstance(quote["price"], int | float)
    assert not isinstance(quote["price"], bool)
    assert quote["price"] > 0

    second = requests.get(f"{api}/quote/AAPL", headers=auth, timeout=30)
    assert second.status_code == 200, second.text
    assert second.json()["cached"] is True

    stats = requests.get(f"{api}/cache/stats", headers=auth, timeout=30)
    assert stats.status_code == 200, stats.text
    counters = stats.json()["kinds"]["quote"]
    assert counters["hits"] >= 1
    assert counters["misses"] >= 1


@pytest.mark.timeout(120)
def test_missing_token_is_401(api: str) -> None:
    response = requests.get(f"{api}/quote/AAPL", timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.timeout(120)
def test_unknown_route_is_the_standard_404(api: str, auth: dict[str, str]) -> None:
    response = requests.get(f"{api}/no-such-thing", headers=auth, timeout=30)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"] == "no route for GET /api/v1/market/no-such-thing"
    assert error["request_id"]


@pytest.mark.timeout(120)
def test_encoded_path_traversal_in_a_symbol_is_400(api: str, auth: dict[str, str]) -> None:
    response = requests.get(f"{api}/quote/..%2Fetc", headers=auth, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"


# --- `python -m infra.local.run` as a developer runs it. ---


def _run_env(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _FOREIGN_ENV}
    return {**env, "PYTHONUNBUFFERED": "1", **overrides}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("variable", ["GATEWAY_PORT", "MOTO_PORT"])
def test_run_refuses_a_taken_port_with_one_clear_line(variable: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"GATEWAY_PORT": str(free_port()), "MOTO_PORT": str(free_port()), variable: str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "infra.local.run"],
            cwd=REPO_ROOT,
            env=_run_env(**ports),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


class _OutputReader:
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


@pytest.mark.timeout(120)
def test_run_serves_the_api_and_stops_cleanly_on_sigint(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway_port, moto_port = free_port(), free_port()
    stderr_path = tmp_path / "run.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.run"],
            cwd=REPO_ROOT,
            env=_run_env(GATEWAY_PORT=str(gateway_port), MOTO_PORT=str(moto_port), REDIS_URL=redis_url),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        reader = _OutputReader(process)
        try:
            banner = reader.banner(timeout=60)
        except queue.Empty:
            pytest.fail(f"no ready banner within 60s; stderr:\n{stderr_path.read_text()}")
        assert any(READY_LINE in line for line in banner)
        token = next(line.split()[-1] for line in banner if "Dev token" in line)

        response = requests.get(
            f"http://127.0.0.1:{gateway_port}/api/v1/market/quote/AAPL",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["source"] == "replay"

        # LocalStack-compatible: localstack-client, aimed at the edge port, sees the template's tables.
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # else localstack-client would use it as is
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        edge = localstack_session.Session(localstack_host=f"127.0.0.1:{moto_port}", region_name="us-east-1")
        assert set(edge.client("dynamodb").list_tables()["TableNames"]) == {
            definition.table_name for definition in table_definitions("local")
        }

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert port_is_free("127.0.0.1", moto_port), "moto's server outlived `make run`"
        assert port_is_free("127.0.0.1", gateway_port)
        assert "Traceback" not in stderr_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
