"""The rehearsal's processes: a Redis server (the emulator's ElastiCache) and ministack, each on a free
port of 127.0.0.1, started in their own process groups and killed with them (ministack runs each
function in a worker subprocess of its own: killing the group ends those too).

ministack lives in its own virtual environment (REHEARSAL_VENV, made by `make rehearse`): it pins
botocore 1.43.x, which the project's boto3 cannot share. Its Python also runs the functions, so that
venv holds the boto3 the Lambda runtime would provide (the function zip ships none).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from infra.deploy import REPO_ROOT

REHEARSAL_VENV = Path(os.environ.get("REHEARSAL_VENV", REPO_ROOT / ".rehearse-venv"))
ACCESS_KEY = "test"  # ministack's default account (000000000000) for every non-numeric key
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


@dataclass
class Emulator:
    """``with Emulator(log_dir) as emulator:`` Redis and ministack up; everything killed on exit."""

    log_dir: Path
    redis_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - fixed commands, no shell
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self._processes.append(process)

    def __enter__(self) -> Emulator:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server not found (make redis installs it)")
        ministack = REHEARSAL_VENV / "bin" / "ministack"
        if not ministack.exists():
            raise RuntimeError(f"{ministack} not found: `make rehearse` creates the rehearsal venv")
        try:
            self._start(
                "redis",
                [redis_server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""],
                dict(os.environ),
            )
            _wait_until(self._redis_up, "redis", 15)
            # Only what ministack needs: nothing of the caller's AWS environment reaches the functions.
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
                "GATEWAY_PORT": str(self.gateway_port),
                "BIND_HOST": "127.0.0.1",  # loopback only, and no other listener than the gateway:
                "SFTP_ENABLED": "0",
                "IOT_MTLS_ENABLED": "0",
                "REDIS_HOST": "127.0.0.1",  # ElastiCache without Docker: this Redis
                "REDIS_PORT": str(self.redis_port),
                "MINISTACK_HOST": "127.0.0.1",
                "LAMBDA_EXECUTOR": "local",
                "MINISTACK_REGION": REGION,
                "PYTHONDONTWRITEBYTECODE": "1",
                # IAM enforced: each function calls with its execution role's credentials and ministack
                # evaluates the role's policies (a policy missing a statement fails the step using it).
                "AUTH": "true",
            }
            self._start("ministack", [str(ministack)], env)
            _wait_until(self._healthy, "ministack", 60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _redis_up(self) -> bool:
        socket.create_connection(("127.0.0.1", self.redis_port), timeout=1).close()
        return True

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/_ministack/health", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in reversed(self._processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._processes.clear()

    def alive(self) -> list[int]:
        """Process-group ids still running (empty after exit)."""
        return [p.pid for p in self._processes if p.poll() is None]
