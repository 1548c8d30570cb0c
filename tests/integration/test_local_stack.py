"""The whole local stack over real sockets: moto's server, our redis-server, the gateway, Lambda workers.

The in-process stack is what `make run` assembles, started piece by piece so each can be torn down; the
last tests run `python -m infra.local.run` itself, as a developer would.
"""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import localstack_client.session as localstack_session
import pytest
import requests

from infra.local.run import free_port, port_is_free
from infra.local.tables import table_definitions
from infra.local.token import issue_dev_token
from tests.conftest import REPO_ROOT
from tests.integration.conftest import READY_LINE, OutputReader, in_process_gateway, run_env, stack_environment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack_env(moto_endpoint: str, redis_url: str) -> Iterator[None]:
    with stack_environment(moto_endpoint, redis_url):
        yield


@pytest.fixture(scope="module")
def api(stack_env: None, moto_endpoint: str, redis_url: str) -> Iterator[str]:
    """Base URL of the REST API on a gateway listening on a free port."""
    with in_process_gateway(moto_endpoint, redis_url) as gateway:
        yield f"{gateway.url}/api/v1/market"


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

    operator = {"Authorization": f"Bearer {issue_dev_token('ops', operator=True)}"}
    stats = requests.get(f"{api}/cache/stats", headers=operator, timeout=30)
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
            env=run_env(**ports),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


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
            env=run_env(GATEWAY_PORT=str(gateway_port), MOTO_PORT=str(moto_port), REDIS_URL=redis_url),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        reader = OutputReader(process)
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
