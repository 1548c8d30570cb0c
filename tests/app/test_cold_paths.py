"""The lazy imports (chalicelib/lazy.py) in fresh processes, as a Lambda container meets them:

- importing app.py loads none of the optional libraries (redis, jwt and its crypto, requests, boto3,
  the X-Ray SDK), and every route still answers on its first use in a fresh process (no 500: a lazily
  imported name that does not resolve would be one);
- with tracing on (in Lambda, POWERTOOLS_TRACE_DISABLED false), each route still gets its X-Ray
  subsegment, and a provider call made through requests gets one of its own (explicit patching);
  with tracing off, the X-Ray SDK is never imported.

Each case runs tests/app/fresh_process.py in its own interpreter against the suite's Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from chalicelib.settings import ENV_VARS
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(600)

PATH_VALUES = {"symbol": "AAPL", "task_id": str(uuid.uuid4()), "job_name": "cleanup"}
QUERIES = {"/api/v1/market/quotes": "?symbols=AAPL,MSFT"}
NOT_FOUND_ON_PURPOSE = {"/api/v1/market/jobs/{task_id}"}  # a run id nobody made


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path) + QUERIES.get(path, "")


ROUTES = [(doc.method, doc.path) for doc in app_module.ROUTES] + [
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/asyncapi.json"),
]


def fresh_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and not k.startswith(("AWS_", "_X_AMZN"))}
    env.pop("LAMBDA_TASK_ROOT", None)
    env.update(
        {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": f"cold-{uuid.uuid4().hex[:8]}:",
            "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            **extra,
        }
    )
    return env


def run_fresh(env: dict[str, str], tmp_path: Path, routes: list[tuple[str, str, str]], *, xray: bool = False) -> Any:
    result_file = tmp_path / f"result-{uuid.uuid4().hex}.json"
    args = [str(result_file), *(["--xray"] if xray else []), *(part for route in routes for part in route)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.app.fresh_process", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(result_file.read_text())


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_answers_on_its_first_use_in_a_fresh_process(
    redis_url: str, tmp_path: Path, method: str, path: str
) -> None:
    # WHEN a fresh process imports app.py and serves this route first
    result = run_fresh(fresh_env(redis_url, tmp_path), tmp_path, [(method, path, concrete(path))])

    # THEN the import loaded none of the optional libraries, and the route answered without a 500
    assert result["loaded_by_import"] == []
    (route,) = result["routes"]
    expected = 404 if path in NOT_FOUND_ON_PURPOSE else 200
    assert route["status"] == expected, route
    # AND tracing being off, the X-Ray SDK was never imported (no segment either)
    assert result["segments"] == []


def test_xray_traces_each_route_when_tracing_is_on(redis_url: str, tmp_path: Path) -> None:
    # GIVEN the environment of a traced Lambda invocation (the recorder's emitter is captured in memory)
    trace_id = f"Root=1-5f84c7a9-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"
    env = fresh_env(
        redis_url,
        tmp_path,
        POWERTOOLS_TRACE_DISABLED="false",
        LAMBDA_TASK_ROOT=str(REPO_ROOT),
        AWS_LAMBDA_FUNCTION_NAME="market-data-test",
        _X_AMZN_TRACE_ID=trace_id,
        AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
    )
    templates = [
        "/api/v1/market/quote/{symbol}",  # a miss: fetched from the replay source through requests
        "/api/v1/market/quotes",
        "/api/v1/market/providers",
        "/api/v1/openapi.json",
    ]
    routes = [("GET", template, concrete(template)) for template in templates]

    # WHEN a fresh process serves them
    result = run_fresh(env, tmp_path, routes, xray=True)

    # THEN importing app.py did not import the X-Ray SDK (the tracer is built by the first request)
    assert result["loaded_by_import"] == []
    assert [r["status"] for r in result["routes"]] == [200, 200, 200, 200]
    # AND each route has its subsegment, named after the route's resource
    segments = result["segments"]
    for template in templates:
        assert f"## GET {template}" in segments, segments
    # AND the provider call the quote's miss made went through the patched requests (its own subsegment)
    assert any(s.endswith(".finance.yahoo.com") for s in segments), segments
