"""The jobs' schedules and timeouts: the spec's cadence, per-stage overrides, and the deployed functions'
timeouts matching what the job runner assumes (a "running" record older than that was killed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chalice.app import ScheduledEventConfig

import app as app_module
from chalicelib.jobs_api import job_specs, schedule_of

CONFIG = Path(__file__).resolve().parents[2] / ".chalice" / "config.json"


def test_the_spec_cadence() -> None:
    specs = {spec.name: spec for spec in job_specs()}
    assert {name: spec.expression for name, spec in specs.items()} == {
        "refresh_quotes": "rate(1 minute)",
        "refresh_indices": "rate(2 minutes)",
        "refresh_market": "rate(5 minutes)",
        "refresh_sentiment": "rate(5 minutes)",
        "warm_cache": "rate(6 hours)",
        "cleanup": "cron(0 2 * * ? *)",
    }
    assert specs["refresh_quotes"].interval_seconds == 60
    assert specs["warm_cache"].interval_seconds == 6 * 3600
    assert specs["cleanup"].interval_seconds == 86400


def test_every_job_is_a_scheduled_lambda_of_the_app() -> None:
    scheduled = {
        source.name: source.schedule_expression
        for source in app_module.app.event_sources
        if isinstance(source, ScheduledEventConfig)
    }
    assert len(scheduled) == len(app_module.app.event_sources)
    assert scheduled == {spec.name: spec.expression for spec in job_specs()}


def test_a_stage_can_override_a_schedule() -> None:
    assert schedule_of("refresh_quotes", {"JOB_SCHEDULE_REFRESH_QUOTES": "rate(2 minutes)"}) == "rate(2 minutes)"
    assert schedule_of("cleanup", {"JOB_SCHEDULE_CLEANUP": "cron(30 3 * * ? *)"}) == "cron(30 3 * * ? *)"


@pytest.mark.parametrize("bad", ["every minute", "rate(1 minutes)", "rate(0.5 minutes)", "cron(* * *)"])
def test_a_malformed_override_fails_naming_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match="JOB_SCHEDULE_REFRESH_QUOTES"):
        schedule_of("refresh_quotes", {"JOB_SCHEDULE_REFRESH_QUOTES": bad})


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_deployed_job_timeouts_match_the_runner_and_each_job_runs_alone(stage: str) -> None:
    functions = json.loads(CONFIG.read_text())["stages"][stage]["lambda_functions"]
    for spec in job_specs():
        assert functions[spec.name]["lambda_timeout"] == spec.timeout_seconds, spec.name
        assert functions[spec.name]["reserved_concurrency"] == 1, spec.name
