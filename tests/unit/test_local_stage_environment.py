"""The local stack's workers get the local stage's variables from .chalice/config.json (as `chalice local`
would), each overridable from the environment `make run` starts in."""

from __future__ import annotations

import json

from infra.local.lambda_runtime import REPO_ROOT
from infra.local.run import local_stage_environment


def _configured() -> dict[str, str]:
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    variables: dict[str, str] = config["stages"]["local"]["environment_variables"]
    return variables


def test_the_workers_get_the_local_stages_configured_variables() -> None:
    assert local_stage_environment({}) == _configured()
    assert local_stage_environment({})["WS_SHARD_COUNT"] == "16"


def test_the_environment_overrides_a_configured_variable() -> None:
    assert local_stage_environment({"WS_SHARD_COUNT": "4"})["WS_SHARD_COUNT"] == "4"
