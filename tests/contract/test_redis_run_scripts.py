"""redis_support.run_scripts against a real Redis: pipelined EVALSHA, a NOSCRIPT reloaded and retried, the
replies in call order, and any other script error raised."""

from __future__ import annotations

import pytest
import redis

from chalicelib.adapters.redis_support import ScriptCall, run_scripts
from tests.redis_counting import CountingConnection

ECHO = "return KEYS[1] .. ':' .. ARGV[1]"
DOUBLE = "return tonumber(ARGV[1]) * 2"
INCREMENT = "return redis.call('INCR', KEYS[1])"


def test_calls_answered_noscript_are_loaded_once_per_script_and_retried_in_place(
    counting_client: redis.Redis, redis_client: redis.Redis
) -> None:
    # GIVEN two scripts, of which the server knows only one (as after a restart, then one other caller)
    echo, double = counting_client.register_script(ECHO), counting_client.register_script(DOUBLE)
    redis_client.script_flush()
    redis_client.script_load(ECHO)
    CountingConnection.writes = 0

    # WHEN calls of both, interleaved, go in one batch
    calls = [
        ScriptCall(echo, ["runs:a"], ["x"]),
        ScriptCall(double, ["runs:b"], [3]),
        ScriptCall(echo, ["runs:c"], ["y"]),
        ScriptCall(double, ["runs:d"], [5]),
    ]
    replies = run_scripts(counting_client, calls)

    # THEN each reply stands at its call's place, and the unknown script was loaded once: two round trips
    assert replies == [b"runs:a:x", 6, b"runs:c:y", 10]
    assert CountingConnection.writes == 2
    assert redis_client.script_exists(double.sha) == [True]

    # AND once both are known, a batch is one round trip
    CountingConnection.writes = 0
    assert run_scripts(counting_client, calls[:2]) == [b"runs:a:x", 6]
    assert CountingConnection.writes == 1


def test_a_script_error_other_than_noscript_is_raised(counting_client: redis.Redis, redis_client: redis.Redis) -> None:
    echo, increment = counting_client.register_script(ECHO), counting_client.register_script(INCREMENT)
    redis_client.hset("runs:hash", "field", "1")  # INCR on a hash: WRONGTYPE
    redis_client.script_flush()  # and the server knows neither script: the error comes on the retry

    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        run_scripts(counting_client, [ScriptCall(echo, ["runs:e"], ["z"]), ScriptCall(increment, ["runs:hash"])])
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        run_scripts(counting_client, [ScriptCall(increment, ["runs:hash"]), ScriptCall(echo, ["runs:e"], ["z"])])
