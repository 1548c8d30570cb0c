"""A redis-server of our own on a free port (persistence off) for the suite and the benches: they never
touch a Redis they did not start, so flushing it is always safe."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from infra.local.run import free_port


@contextmanager
def own_redis(workdir: Path | None = None) -> Iterator[str]:
    """Start it, wait until it answers, yield its URL; stop it on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run `make test` (it installs one) or `make redis`")
    port = free_port()
    directory = str(workdir) if workdir is not None else tempfile.mkdtemp(prefix="own-redis-")
    made_directory = workdir is None
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=0.5)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"own redis-server on port {port} did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        if made_directory:
            shutil.rmtree(directory, ignore_errors=True)
