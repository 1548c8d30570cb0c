"""The OpenAPI document is the server's contract: schemathesis fuzzes the local gateway over a real socket.

The stack is the one `make run` assembles (moto's server, our redis-server, the gateway, Lambda workers),
started in-process on free ports. schemathesis reads /api/v1/openapi.json from it and runs its phases
(coverage, fuzzing, stateful) with every check but one, twice: once with a fixed seed (the same cases on
every run, so CI is reproducible) and once with a random seed (printed, with the number of cases run, so a
failure found by chance can be replayed with CONTRACT_SEED=<seed>). Any failure fails the test: a server
error (5xx), a response outside the document, a schema-valid request refused, a schema-invalid request
accepted.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import engine
from schemathesis.engine import events

from chalicelib.errors import ValidationFailed
from chalicelib.models.market import Interval, Period
from chalicelib.services.market_data import validate_history_request
from infra.local.token import issue_dev_token
from tests.integration.conftest import in_process_gateway, stack_environment

pytestmark = pytest.mark.integration

FIXED_SEED = 20261201
# Per operation and phase; 17 operations through coverage, fuzzing and stateful phases make a few hundred
# cases per run, about half a minute on two cores.
MAX_EXAMPLES = 10
HISTORICAL_PATH = "/api/v1/market/historical/{symbol}"


@pytest.fixture(scope="module")
def stack_env(moto_endpoint: str, redis_url: str) -> Iterator[None]:
    # The fuzzer sends hundreds of requests a minute as one user; the per-user limit (its 429 is declared,
    # and tested in tests/app) would otherwise answer most of them.
    with stack_environment(moto_endpoint, redis_url, USER_RATE_LIMIT_PER_MINUTE="1000000"):
        yield


@pytest.fixture(scope="module")
def gateway_url(stack_env: None, moto_endpoint: str, redis_url: str) -> Iterator[str]:
    with in_process_gateway(moto_endpoint, redis_url) as gateway:
        yield gateway.url


@pytest.fixture(scope="module")
def token(stack_env: None) -> str:
    return issue_dev_token()


@dataclass
class ContractRun:
    seed: int
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    by_check: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def _violates_documented_combination(case: schemathesis.Case[Any]) -> bool:
    query = case.query or {}
    try:
        period = Period(str(query.get("period", Period.Y1.value)))
        interval = Interval(str(query.get("interval", Interval.D1.value)))
    except ValueError:
        return False  # not an enum value: a negative case, which the server must refuse anyway
    try:
        validate_history_request(period, interval)
    except ValidationFailed:
        return True
    return False


def run_contract(base_url: str, token: str, seed: int) -> ContractRun:
    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            "base-url": base_url,
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {"max-examples": MAX_EXAMPLES},
            # No crash cache (.schemathesis/): a run replays no failure of an earlier one and writes nothing.
            "cache": {"enabled": False},
            "checks": {
                # API Gateway REST answers a method a resource does not declare with its
                # MISSING_AUTHENTICATION_TOKEN gateway response, never 405; infra/template.yaml sets that
                # response to 404 with our error body and the local gateway answers the same
                # (tests/infra/test_infra_template.py, test_undeclared_methods_get_the_gateway_404 below).
                "unsupported_method": {"enabled": False},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", config=config, timeout=30)

    @schema.hook("filter_case")
    def documented_history_combinations(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
        # JSON Schema cannot tie one query parameter to another, so the period/interval rule is in the
        # operation's description (with its 400) and checked by test_history_combinations_are_documented.
        # A schema-valid case that breaks it is dropped here rather than counted as a rejected valid request.
        if case.operation.path != HISTORICAL_PATH or case.meta is None:
            return True
        return not (case.meta.generation.mode.is_positive and _violates_documented_combination(case))

    result = ContractRun(seed=seed)
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            result.cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    response = event.recorder.find_response(case_id=case_id)
                    answer = f"{response.status_code} {response.text[:300]}" if response is not None else "-"
                    result.by_check[check.name] += 1
                    result.failures.append(
                        f"[{check.name}] {failure.title}: {failure.message}\n{check.failure_info.code_sample}\n"
                        f"-> {answer}"
                    )
        elif isinstance(event, events.NonFatalError):
            result.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            result.errors.append(f"fatal: {event.exception!r}")
    return result


def _random_seed() -> int:
    override = os.environ.get("CONTRACT_SEED")
    return int(override) if override else random.SystemRandom().getrandbits(32)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed_kind", ["fixed", "random"])
def test_the_server_keeps_its_openapi_contract(
    gateway_url: str, token: str, seed_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = FIXED_SEED if seed_kind == "fixed" else _random_seed()
    result = run_contract(gateway_url, token, seed)
    with capsys.disabled():
        print(
            f"\nschemathesis ({seed_kind} seed {seed}; rerun with CONTRACT_SEED={seed}): {result.cases} cases, "
            f"{len(result.failures)} failures {dict(result.by_check)}, {len(result.errors)} errors"
        )
    assert result.cases >= 17 * MAX_EXAMPLES, "fewer cases than one fuzzing round per operation"
    assert not result.errors, result.errors
    assert result.by_check["not_a_server_error"] == 0, "server errors:\n" + "\n\n".join(result.failures)
    assert result.by_check["response_schema_conformance"] == 0, "\n\n".join(result.failures)
    assert result.by_check["positive_data_acceptance"] == 0, "\n\n".join(result.failures)
    assert not result.failures, "\n\n".join(result.failures)


# --- What the fuzzer is told not to judge, checked directly. ---


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("TRACE", "/api/v1/market/sentiment"),
        ("PUT", "/api/v1/market/quote/AAPL"),
        ("DELETE", "/api/v1/market/search"),
        ("GET", "/api/v1/market/search"),
        ("GET", "/api/v1/market/no-such-route"),
    ],
)
def test_undeclared_methods_get_the_gateway_404(gateway_url: str, token: str, method: str, path: str) -> None:
    response = requests.request(method, gateway_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 404, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"] == f"no route for {method} {path}"
    assert error["request_id"] == response.headers["x-amzn-RequestId"]


@pytest.mark.timeout(120)
def test_history_combinations_are_documented_and_refused_with_a_400(gateway_url: str, token: str) -> None:
    document = requests.get(f"{gateway_url}/api/v1/openapi.json", timeout=30).json()
    operation = document["paths"][HISTORICAL_PATH]["get"]
    assert "1m for 1d, 5d" in operation["description"]
    assert "400" in operation["responses"]
    response = requests.get(
        f"{gateway_url}/api/v1/market/historical/AAPL?period=1y&interval=1m",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "interval 1m is offered for periods 1d, 5d only (asked: 1y)"
