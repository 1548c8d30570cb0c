"""The scheduled jobs' glue: the translation from a CloudWatch scheduled event (or a manual trigger)
to a recorded run. The schedules themselves live with the jobs service (services/job_schedules.py);
they are re-exported here for app.py, which declares them.
"""

from __future__ import annotations

from typing import Any

from chalice.app import CloudWatchEvent

from chalicelib import bootstrap, observability
from chalicelib.deadline import remaining_deadline
from chalicelib.services.job_schedules import JOB_NAMES, job_specs, schedule_of
from chalicelib.services.jobs import Trigger

__all__ = ["JOB_NAMES", "job_specs", "run_scheduled", "schedule_of"]

logger = observability.logger


def run_scheduled(name: str, event: CloudWatchEvent, lambda_context: Any) -> dict[str, Any]:
    """A scheduled invocation: the event id makes duplicate deliveries harmless."""
    logger.append_keys(job=name)
    try:
        run = bootstrap.container().jobs.run(
            name, trigger=Trigger.SCHEDULE, event_id=event.event_id, deadline=remaining_deadline(lambda_context)
        )
    finally:
        logger.remove_keys(["job"])
    return {"task_id": run.task_id, "status": run.status.value, "counts": dict(run.counts), "error": run.error}
