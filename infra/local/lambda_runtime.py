"""Lambda containers for the local stack: a pool of worker processes that each import app.py.

Each invocation runs in a worker process, never in the gateway's event loop: handlers do blocking I/O
(and may call back into the gateway over HTTP), and Chalice keeps `current_request` on the app object,
so two invocations sharing one process would race. A worker is one warm container: importing app.py
in it is the cold start, and it serves one invocation at a time.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, NoReturn

from chalice.app import ScheduledEventConfig

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
APP_MODULE = "app"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_WORKERS = 4
DEFAULT_MEMORY_MB = 128  # Chalice's default lambda_memory_size
ACCOUNT_ID = "123456789012"
# Lambda refuses synchronous responses above 6 MB (API Gateway then answers 502); so do we, so that an
# oversized payload fails locally rather than first in AWS.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
# How long the pool waits past the Lambda timeout for a worker that does not honour SIGALRM.
_TIMEOUT_GRACE_SECONDS = 2.0


class LambdaTimeout(BaseException):
    """The invocation ran past its timeout.

    A BaseException so that a handler's `except Exception` (Chalice's own error handler included)
    cannot swallow it, just as nothing inside a real function survives Lambda's kill.
    """


class LambdaError(Exception):
    """The runtime rejected the handler's result (not JSON-serialisable, or too large)."""


@dataclass(frozen=True)
class Route:
    """One API Gateway resource: a Chalice path template and the methods defined on it."""

    template: str
    methods: frozenset[str]
    # Headers of the CORS preflight API Gateway generates for this resource; None without CORS.
    preflight_headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]
    # Content types API Gateway passes base64-encoded (Chalice's api.binary_types).
    binary_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduledFunction:
    """One `@app.schedule` function: its Chalice name, its EventBridge schedule expression and the name
    of its handler's attribute on the app module ("app.job_cleanup" → "job_cleanup")."""

    name: str
    expression: str
    handler: str


@dataclass
class LambdaContext:
    """The context object the Python runtime passes to a handler, with a real deadline."""

    function_name: str
    timeout_seconds: float
    function_version: str = "$LATEST"
    # A string, as the Python runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
    memory_limit_in_mb: str = str(DEFAULT_MEMORY_MB)
    region: str = "us-east-1"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = ""
    client_context: None = None  # only set for mobile SDK invocations
    identity: None = None
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# --- Worker side: runs in the spawned processes. ---

_app_module: ModuleType | None = None
_replay_installed = False
_log_stream = ""


def _init_worker(app_root: str) -> None:
    """Process initializer: become a fresh Lambda container and do the cold start."""
    global _log_stream
    # Ctrl-C reaches the whole process group; the parent decides when workers stop, and a worker
    # printing a KeyboardInterrupt traceback would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), name="orphan-watchdog", daemon=True).start()
    os.chdir(app_root)
    if app_root not in sys.path:
        sys.path.insert(0, app_root)
    _log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    try:
        _load_app()
    except Exception:
        # Keep the pool usable: like Lambda after an init error, the next invocation retries the
        # init and its failure becomes that invocation's error (a 502 at the gateway).
        logger.exception("cold start failed (import of %s)", APP_MODULE)


def _exit_when_orphaned(parent_pid: int) -> None:
    # A worker holds its own task queue open, so it never sees EOF: if the gateway process is killed
    # without cleaning up (kill -9), this is what stops the worker from living on forever.
    while os.getppid() == parent_pid:
        time.sleep(1)
    os._exit(0)


def _load_app() -> ModuleType:
    global _app_module, _replay_installed
    if _app_module is None:
        if not _replay_installed:
            # Local-only code: imported here, in the worker, and never by chalicelib.
            from infra.local.replay import install_if_configured

            install_if_configured()
            _replay_installed = True
        _app_module = importlib.import_module(APP_MODULE)
    return _app_module


def invoke(event: dict[str, Any], timeout_seconds: float, handler: str | None = None) -> dict[str, Any]:
    """Run one invocation in this worker and return its (JSON) result.

    `handler` names an attribute of the app module (a WebSocket handler such as "on_ws_connect", a
    function of its own on AWS); None is the Chalice app object itself, the REST API's function.
    """
    module = _load_app()
    chalice_app = module.app
    target = chalice_app if handler is None else getattr(module, handler)
    # As `chalice deploy` names them: the REST function <app>-<stage>, the others <app>-<stage>-<name>.
    function_name = f"{chalice_app.app_name}-{os.environ.get('STAGE', 'local')}"
    context = LambdaContext(
        function_name=function_name if handler is None else f"{function_name}-{handler}",
        timeout_seconds=timeout_seconds,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        log_stream_name=_log_stream,
    )

    def on_alarm(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise LambdaTimeout(f"Task timed out after {timeout_seconds:.2f} seconds")

    # The worker's main thread runs the task, so SIGALRM interrupts the handler at its deadline.
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_seconds)
    try:
        result = target(event, context)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The runtime serialises the result to JSON; a result that cannot be is a function error.
    try:
        payload = json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise LambdaError(f"handler returned a non-JSON-serialisable result: {exc}") from None
    if len(payload.encode()) > MAX_RESPONSE_BYTES:
        raise LambdaError(f"response payload of {len(payload)} bytes exceeds Lambda's 6 MB limit")
    decoded: dict[str, Any] = json.loads(payload)
    return decoded


def _occupy(seconds: float) -> int:
    """Keeps a worker busy briefly (so the pool starts the next one) and says which process it was."""
    time.sleep(seconds)
    return os.getpid()


# --- Gateway side. ---


class LambdaPool:
    """Warm containers for one function: invocations run in worker processes, one at a time each."""

    def __init__(
        self,
        *,
        workers: int = DEFAULT_WORKERS,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        app_root: Path = REPO_ROOT,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._workers = workers
        self._app_root = app_root
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn, not fork: a fresh interpreter per container, and no copy of the gateway's event loop,
        # threads or sockets.
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(str(self._app_root),),
        )

    async def invoke(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        """Invoke the function (`handler`: an app module attribute, None for the Chalice app, i.e.
        REST); raises LambdaTimeout past the timeout, or the handler's exception."""
        loop = asyncio.get_running_loop()
        executor = self._executor
        future = loop.run_in_executor(executor, invoke, event, self.timeout_seconds, handler)
        try:
            # The worker enforces the timeout itself; this bound only covers a handler stuck where
            # SIGALRM cannot interrupt it.
            return await asyncio.wait_for(future, self.timeout_seconds + _TIMEOUT_GRACE_SECONDS)
        except TimeoutError:
            message = f"Task timed out after {self.timeout_seconds:.2f} seconds (the worker ignored SIGALRM)"
            raise LambdaTimeout(message) from None
        except BrokenProcessPool:
            # A worker died (crash, OOM kill): Lambda would replace the container; we replace the pool.
            if self._executor is executor:
                logger.error("a Lambda worker process died; starting fresh workers")
                self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    def start_all(self, timeout_seconds: float = 120.0) -> int:
        """Start every worker now (each imports app.py: its cold start), as a warm fleet would be,
        instead of on first use; returns how many distinct workers answered."""
        futures = [self._executor.submit(_occupy, 0.5) for _ in range(self._workers)]
        return len({future.result(timeout=timeout_seconds) for future in futures})

    def close(self, grace_seconds: float = 5.0) -> None:
        """Stop the workers: let in-flight invocations finish for grace_seconds, then terminate."""
        # ProcessPoolExecutor has no public way to terminate its workers before Python 3.14.
        processes = list((self._executor._processes or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace_seconds
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(2)
            if process.is_alive():
                process.kill()
                process.join()


def _chalice_app(app_root: Path) -> Any:
    if str(app_root) not in sys.path:
        sys.path.insert(0, str(app_root))
    return importlib.import_module(APP_MODULE).app


def websocket_handlers(app_root: Path = REPO_ROOT) -> dict[str, str]:
    """The app's WebSocket routes: route key ("$connect", "$default", "$disconnect") → the name of the
    handler's attribute on the app module ("app.on_ws_connect" → "on_ws_connect"). Empty without any."""
    handlers: Mapping[str, Any] = getattr(_chalice_app(app_root), "websocket_handlers", {})
    return {route_key: config.handler_string.rsplit(".", 1)[-1] for route_key, config in handlers.items()}


def lambda_functions(app_root: Path = REPO_ROOT) -> dict[str, str]:
    """The app's `@app.lambda_function`s: Chalice name → the name of the handler's attribute on the app
    module (what the local Invoke API runs for that function)."""
    functions: Sequence[Any] = getattr(_chalice_app(app_root), "pure_lambda_functions", [])
    return {function.name: function.handler_string.rsplit(".", 1)[-1] for function in functions}


def schedule_handlers(app_root: Path = REPO_ROOT) -> list[ScheduledFunction]:
    """The app's scheduled functions (Chalice's ScheduledEventConfig event sources), in declaration
    order; an expression given as a chalice Rate or Cron object is turned into its string form."""
    functions = []
    for source in getattr(_chalice_app(app_root), "event_sources", []):
        if not isinstance(source, ScheduledEventConfig):
            continue
        expression = source.schedule_expression
        text = expression if isinstance(expression, str) else expression.to_string()
        functions.append(ScheduledFunction(source.name, text, source.handler_string.rsplit(".", 1)[-1]))
    return functions


def route_table(app_root: Path = REPO_ROOT) -> RouteTable:
    """The app's REST routes, read by importing app.py in this process (cheap: no I/O at import)."""
    chalice_app = _chalice_app(app_root)
    routes = []
    for template, entries in chalice_app.routes.items():
        cors_methods = [method for method, entry in entries.items() if entry.cors is not None]
        preflight: dict[str, str] | None = None
        if cors_methods and "OPTIONS" not in entries:
            # What chalice deploy generates: a mock OPTIONS method answering with the route's CORS
            # headers (Chalice requires one CORS config per path, so any entry's config will do).
            preflight = {
                **entries[cors_methods[0]].cors.get_access_control_headers(),
                "Access-Control-Allow-Methods": ",".join([*cors_methods, "OPTIONS"]),
            }
        if any(entry.authorizer is not None for entry in entries.values()):
            logger.warning("route %s uses a Chalice authorizer, which the local gateway does not run", template)
        routes.append(Route(template, frozenset(entries), preflight))
    return RouteTable(tuple(routes), tuple(chalice_app.api.binary_types))
