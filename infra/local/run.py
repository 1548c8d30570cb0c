"""`make run`: the whole local stack in one foreground process.

In order: port checks, configuration check, moto's server (the AWS endpoint, LocalStack's edge port),
a Redis (the one at REDIS_URL if it answers, else a redis-server of our own), the DynamoDB tables
from infra/template.yaml, then the gateway with its Lambda worker pool and the local scheduler (the
EventBridge rules moto stores but never fires: infra/local/scheduler.py). Ctrl-C (or SIGTERM) stops
the scheduler, the gateway and the workers and terminates exactly the processes this started.

Environment: GATEWAY_HOST (127.0.0.1), GATEWAY_PORT (8000), MOTO_PORT (4566), REDIS_URL
(redis://127.0.0.1:6379/0), LOCAL_REDIS_PORT (6380; used when REDIS_URL does not answer),
WS_IDLE_TIMEOUT_SECONDS (600) and WS_MAX_CONNECTION_SECONDS (7200): the WebSocket API's idle timeout
and maximum connection duration (API Gateway's quotas; shorter values for trying them out).

Scheduled jobs: each `@app.schedule` function is invoked at its own expression (rates count from the
stack's start, crons in UTC) with EventBridge's event. LOCAL_SCHEDULE overrides jobs for demos and
tests, e.g. `LOCAL_SCHEDULE=refresh_quotes=5s,refresh_indices=10s,cleanup=off` (a period in seconds,
from start; `off` disables the job); LOCAL_SCHEDULER=off disables the scheduler altogether.

Replay clock (MARKET_DATA_SOURCE=replay): REPLAY_STEP_SECONDS (60; 0 freezes the replay) is how often
the whole replay universe moves on to the next real trading day, counted from REPLAY_EPOCH (epoch
seconds; set to the stack's start unless given), which every worker inherits so that all of them are on
the same day; REPLAY_START_DAY (a trading-day number or date; default 130) is the first replay day
(infra/local/replay/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import redis
from aiohttp import web

from chalicelib.errors import ConfigurationError
from chalicelib.settings import load_settings
from infra.local import gateway
from infra.local.dev_token import dev_token_registrar
from infra.local.lambda_invoke import AsyncInvocations, invoke_registrar
from infra.local.lambda_runtime import (
    REPO_ROOT,
    LambdaPool,
    ScheduledFunction,
    lambda_functions,
    route_table,
    schedule_handlers,
    websocket_handlers,
)
from infra.local.replay.transport import (
    REPLAY_EPOCH_ENV,
    REPLAY_START_DAY_ENV,
    REPLAY_STEP_ENV,
    replay_calendar_from_env,
    replay_clock_from_env,
)
from infra.local.scheduler import LocalScheduler, SchedulerSettings, scheduler_registrar, scheduler_settings_from_env
from infra.local.tables import create_tables
from infra.local.token import issue_dev_token
from infra.local.websocket import WebSocketLimits, websocket_registrar

logger = logging.getLogger("infra.local.run")

LOOPBACK = "127.0.0.1"
STAGE = "local"
REGION = "us-east-1"
API_BASE_PATH = "/api/v1/market"
# make run's replay clock: each 1-minute quote refresh sees the next real daily bar.
DEFAULT_REPLAY_STEP_SECONDS = "60"
LOCAL_DIR = REPO_ROOT / ".local"
# Dummy credentials: moto accepts anything, and real ones must never reach it (or AWS by mistake).
AWS_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class StartupError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


@dataclass(frozen=True)
class StackConfig:
    gateway_host: str
    gateway_port: int
    moto_port: int
    redis_url: str
    local_redis_port: int
    websocket_limits: WebSocketLimits = field(default_factory=WebSocketLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackConfig:
        defaults = WebSocketLimits()
        return cls(
            gateway_host=env.get("GATEWAY_HOST") or LOOPBACK,
            gateway_port=_port(env, "GATEWAY_PORT", 8000),
            moto_port=_port(env, "MOTO_PORT", 4566),
            redis_url=env.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            local_redis_port=_port(env, "LOCAL_REDIS_PORT", 6380),
            websocket_limits=WebSocketLimits(
                idle_timeout_seconds=_seconds(env, "WS_IDLE_TIMEOUT_SECONDS", defaults.idle_timeout_seconds),
                max_connection_seconds=_seconds(env, "WS_MAX_CONNECTION_SECONDS", defaults.max_connection_seconds),
            ),
        )

    @property
    def aws_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.moto_port}"

    @property
    def gateway_url(self) -> str:
        # A wildcard bind address is not something a browser can connect to.
        host = LOOPBACK if self.gateway_host in ("0.0.0.0", "") else self.gateway_host  # noqa: S104
        return f"http://{host}:{self.gateway_port}"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StartupError(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise StartupError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


# --- Ports and processes. ---


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind: a TIME_WAIT leftover must not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(host: str, port: int, env_var: str) -> None:
    if not port_is_free(host, port):
        raise StartupError(f"port {port} on {host} is already in use; set {env_var} to a free port")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec. On Linux the kernel then sends SIGTERM to the child if this
    # process dies without cleaning up (kill -9), so no moto or redis-server is left behind.
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_process(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a helper server with its output in log_path (the terminal stays for the banner and logs).

    It stays in our process group, so a terminal's Ctrl-C reaches it too; both servers exit quietly.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # one run's output: the log explains this run
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # no threads exist yet
        )


def stop_process(process: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_moto(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    return start_process([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)], log_path)


def wait_for_http(host: str, port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    """Wait until the server answers any HTTP request (moto's root answers 404, which is fine)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise StartupError(f"the server on port {port} exited with code {process.returncode}; see {log_path}")
        connection = http.client.HTTPConnection(host, port, timeout=1)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise StartupError(
                    f"the server on port {port} did not answer within {timeout:.0f}s; see {log_path}"
                ) from None
            time.sleep(0.1)
        finally:
            connection.close()


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


def start_redis(port: int, workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartupError("no Redis answers at REDIS_URL and redis-server is not installed; run `make redis`")
    workdir.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    return start_process(args, log_path)


def wait_for_redis(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise StartupError(f"the redis-server we started at {url} did not answer; see {log_path}")
        time.sleep(0.05)


# --- The stack. ---


def local_stage_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The local stage's `environment_variables` in .chalice/config.json (as `chalice local --stage local`
    would set them), each overridden by the same variable in ``env``."""
    stages = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))["stages"]
    configured: dict[str, str] = stages[STAGE].get("environment_variables", {})
    return {name: env.get(name) or value for name, value in configured.items()}


def app_environment(config: StackConfig, env: Mapping[str, str], *, started_at: float | None = None) -> dict[str, str]:
    """Variables the Lambda workers inherit: the local stage's configured ones (WS_SHARD_COUNT, ...), then
    the stack's own. Table names keep the settings' defaults."""
    return {
        **local_stage_environment(env),
        **replay_clock_environment(env, time.time() if started_at is None else started_at),
        **AWS_DUMMY_ENV,
        "AWS_ENDPOINT_URL": config.aws_endpoint,
        "STAGE": STAGE,
        "MARKET_DATA_SOURCE": env.get("MARKET_DATA_SOURCE") or "replay",
        "REDIS_URL": config.redis_url,
        # Where the WebSocket handlers' apigatewaymanagementapi client posts (this gateway).
        "WEBSOCKET_MANAGEMENT_ENDPOINT": config.gateway_url,
        # boto3's service-specific endpoint: Lambda invocations (the fan-out dispatch) go to this
        # gateway's Invoke API, which runs them in the same worker pool; everything else goes to moto.
        "AWS_ENDPOINT_URL_LAMBDA": config.gateway_url,
        # The deployed design: one fanout_worker invocation per shard of a round, through that Invoke API.
        "FANOUT_DISPATCH": "lambda",
    }


def replay_clock_environment(env: Mapping[str, str], started_at: float) -> dict[str, str]:
    """REPLAY_STEP_SECONDS (default 60) and REPLAY_EPOCH (default: the stack's start), validated, and
    REPLAY_START_DAY validated when given (a bad value stops the stack here, not in every worker)."""
    clock_env = {
        REPLAY_STEP_ENV: (env.get(REPLAY_STEP_ENV) or "").strip() or DEFAULT_REPLAY_STEP_SECONDS,
        REPLAY_EPOCH_ENV: (env.get(REPLAY_EPOCH_ENV) or "").strip() or f"{started_at:.3f}",
    }
    try:
        replay_clock_from_env(clock_env)
        start_day = (env.get(REPLAY_START_DAY_ENV) or "").strip()
        if start_day:
            clock_env[REPLAY_START_DAY_ENV] = start_day
            replay_calendar_from_env(clock_env)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return clock_env


def scheduler_settings(env: Mapping[str, str], functions: list[ScheduledFunction]) -> SchedulerSettings:
    try:
        return scheduler_settings_from_env(env, [function.name for function in functions])
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def check_configuration(env: Mapping[str, str]) -> None:
    try:
        load_settings(env)
    except ConfigurationError as exc:
        raise StartupError(exc.message) from None


def ensure_redis(config: StackConfig, stack: contextlib.ExitStack) -> tuple[str, bool]:
    """The Redis URL to use, and whether we started that server."""
    if redis_answers(config.redis_url):
        return config.redis_url, False
    port = config.local_redis_port if port_is_free(LOOPBACK, config.local_redis_port) else free_port()
    url = f"redis://{LOOPBACK}:{port}/0"
    log_path = LOCAL_DIR / "redis.log"
    process = start_redis(port, LOCAL_DIR / "redis", log_path)
    stack.callback(stop_process, process)
    wait_for_redis(url, process, log_path)
    return url, True


def banner(
    config: StackConfig, env: Mapping[str, str], redis_started: bool, scheduler: LocalScheduler | None = None
) -> str:
    rest = config.gateway_url + API_BASE_PATH
    websocket = rest.replace("http://", "ws://", 1) + "/ws/market-data?token=<dev token>"
    redis_note = "started by make run, persistence off" if redis_started else "already running, reused"
    source = env["MARKET_DATA_SOURCE"]
    if source == "replay":
        calendar = replay_calendar_from_env(env)
        first = f"from trading day {calendar.start + 1} ({calendar.days[calendar.start].isoformat()})"
        if replay_clock_from_env(env) is not None:
            source += f"  ({first}, one trading day every {float(env[REPLAY_STEP_ENV]):g}s)"
        else:
            source += f"  (frozen on trading day {calendar.start + 1}, {calendar.days[calendar.start].isoformat()})"
    lines = [
        "Local stack ready (Ctrl-C stops it)",
        f"  REST API     {rest}",
        f"  WebSocket    {websocket}",
        f"  AWS (moto)   {env['AWS_ENDPOINT_URL']}",
        f"  Redis        {env['REDIS_URL']}  ({redis_note})",
        f"  Data source  {source}",
        f"  Scheduler    {scheduler.describe() if scheduler is not None else 'off (LOCAL_SCHEDULER=off)'}",
        f"  Dashboard    {config.gateway_url}/  (open it in a browser; it gets its own dev token)",
    ]
    try:
        token = issue_dev_token()
    except SystemExit as exc:  # RS256: dev tokens cannot be signed locally
        lines.append(f"  Dev token    unavailable: {exc}")
    else:
        lines += [
            f"  Dev token    {token}",
            f'  Try          curl -H "Authorization: Bearer {token}" {rest}/quote/AAPL',
            "  Operators    .venv/bin/python -m infra.local.token --operator  (for /cache/stats, /ws/stats, /jobs/*)",
        ]
    return "\n".join(lines)


async def serve_until_signalled(
    config: StackConfig, app: web.Application, ready_message: str, scheduler: LocalScheduler | None = None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listening = False
    try:
        async with gateway.serve(app, config.gateway_host, config.gateway_port):
            listening = True
            print(ready_message, flush=True)
            await stop.wait()
            logger.info("stopping")
            if scheduler is not None:
                # While the gateway still listens: in-flight jobs may post to WebSocket connections.
                await scheduler.stop()
    except OSError as exc:
        if listening:
            raise
        # Taken between the port check and now.
        raise StartupError(
            f"cannot listen on {config.gateway_host}:{config.gateway_port} ({exc.strerror}); "
            "set GATEWAY_PORT to a free port"
        ) from None


def run(config: StackConfig, stack: contextlib.ExitStack) -> None:
    require_free_port(config.gateway_host, config.gateway_port, "GATEWAY_PORT")
    require_free_port(LOOPBACK, config.moto_port, "MOTO_PORT")
    env = app_environment(config, os.environ)
    check_configuration({**os.environ, **env})
    functions = schedule_handlers()
    schedule = scheduler_settings(os.environ, functions)

    moto_log = LOCAL_DIR / "moto.log"
    moto = start_moto(config.moto_port, moto_log)
    stack.callback(stop_process, moto)
    wait_for_http(LOOPBACK, config.moto_port, moto, moto_log, timeout=30)

    env["REDIS_URL"], redis_started = ensure_redis(config, stack)
    os.environ.update(env)  # before the pool exists: spawned workers inherit it

    dynamodb = boto3.client("dynamodb", endpoint_url=config.aws_endpoint, region_name=REGION)
    tables = create_tables(dynamodb, STAGE)
    logger.info("tables ready: %s", ", ".join(tables))

    pool = LambdaPool()
    stack.callback(pool.close)
    # Warm containers before "ready": the first request, refresh or fan-out invocation should not pay a
    # worker's cold start (Lambda keeps warm containers around too; cold starts are measured separately).
    logger.info("Lambda workers warm: %d", pool.start_all())
    invocations = AsyncInvocations(lambda_functions(), pool.invoke, stage=STAGE)
    registrars = [
        websocket_registrar(websocket_handlers(), limits=config.websocket_limits),
        invoke_registrar(invocations),
        dev_token_registrar(),  # the dashboard's token under make run (never in a deployed stage)
    ]
    scheduler = None
    if schedule.enabled:
        scheduler = LocalScheduler(functions, pool, overrides=schedule.overrides, region=REGION)
        registrars.append(scheduler_registrar(scheduler))
    app = gateway.build_app(route_table(), pool, stage=STAGE, registrars=registrars)
    ready = banner(config, env, redis_started, scheduler)
    asyncio.run(serve_until_signalled(config, app, ready, scheduler))


def _ignore_interrupts() -> None:
    # Cleanup is bounded (grace periods, then kill); a second Ctrl-C must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment variables"
    # Until the event loop takes both signals over, SIGTERM unwinds like Ctrl-C (cleanup included).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = contextlib.ExitStack()
    try:
        run(StackConfig.from_env(os.environ), stack)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        _ignore_interrupts()
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
