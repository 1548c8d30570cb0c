"""The scheduled jobs' schedules, fixed when `chalice deploy` imports app.py.

They are the spec's, overridable per stage with ``JOB_SCHEDULE_<NAME>`` (an EventBridge expression
such as ``rate(2 minutes)`` or ``cron(0 2 * * ? *)``) in the stage's environment when deploying; a
malformed override fails the import (so the deploy), naming the variable.
"""

from __future__ import annotations

import os
import re

from chalicelib.services.jobs import JobSpec

_RATE = re.compile(r"^rate\((\d{1,4}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()\s]+ ){5}[^()\s]+\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

# name: (default expression, description, function timeout in seconds; see .chalice/config.json)
_DEFAULTS: dict[str, tuple[str, str, int]] = {
    "refresh_quotes": ("rate(1 minute)", "quotes of subscribed and popular symbols; quote_update", 50),
    "refresh_indices": ("rate(2 minutes)", "market indices; market_update", 60),
    "refresh_market": ("rate(5 minutes)", "sectors and movers; sector_update, market_update", 120),
    "refresh_sentiment": ("rate(5 minutes)", "market sentiment; sentiment_update", 120),
    "warm_cache": ("rate(6 hours)", "quotes, profiles and 1y/1d history of the popular list", 600),
    "cleanup": ("cron(0 2 * * ? *)", "expired connections, subscriptions and job runs", 300),
}

JOB_NAMES: tuple[str, ...] = tuple(_DEFAULTS)


def _interval_seconds(expression: str, default: int) -> int:
    rate = _RATE.match(expression)
    if rate is None:
        return default  # a cron expression: the spec's daily cadence
    unit = rate.group(2).removesuffix("s")
    return int(rate.group(1)) * _UNIT_SECONDS[unit]


def schedule_of(name: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    variable = f"JOB_SCHEDULE_{name.upper()}"
    expression = (env.get(variable) or "").strip() or _DEFAULTS[name][0]
    if not (_RATE.match(expression) or _CRON.match(expression)):
        raise ValueError(f"{variable}={expression!r} is not an EventBridge rate(...) or cron(...) expression")
    if (rate := _RATE.match(expression)) and int(rate.group(1)) == 1 and rate.group(2).endswith("s"):
        raise ValueError(f"{variable}: EventBridge wants the singular unit for 1 ({expression!r})")
    return expression


def job_specs() -> list[JobSpec]:
    specs = []
    for name, (default, description, timeout) in _DEFAULTS.items():
        expression = schedule_of(name)
        default_interval = _interval_seconds(default, 86400)
        specs.append(JobSpec(name, expression, _interval_seconds(expression, default_interval), description, timeout))
    return specs
