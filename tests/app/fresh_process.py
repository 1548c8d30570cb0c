"""Run in a fresh interpreter by tests/app/test_cold_paths.py: import app.py as a Lambda container would,
note which optional libraries that import loaded, then invoke routes (each the process's first use of
it) the way the Lambda runtime does, ``app.app(event, context)`` with API Gateway's proxy event, against
the suite's Redis, moto and the replay source.

    python -m tests.app.fresh_process RESULT_FILE [--xray] METHOD RESOURCE PATH [METHOD RESOURCE PATH ...]

(RESOURCE: the route's template, e.g. /api/v1/market/quote/{symbol}; PATH: the path asked, with its query.)

Writes JSON to RESULT_FILE: the modules loaded by the import, each route's status, and with --xray the
names of every X-Ray (sub)segment the recorder emitted (captured in memory, not sent).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from typing import Any

# What app.py must not import by itself (chalicelib/lazy.py): each is imported by the route that uses it.
# botocore's package alone is light and Powertools imports it (to tag its user agent); its client
# machinery is what costs.
OPTIONAL = ("redis", "jwt", "cryptography", "requests", "boto3", "botocore.client", "aws_xray_sdk", "yfinance")


def api_event(method: str, resource: str, path: str, token: str) -> dict[str, Any]:
    """API Gateway's REST proxy event (payload 1.0), as infra/local's gateway builds it."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(path)
    query = parse_qs(parts.query) or None
    names = re.findall(r"\{(\w+)\}", resource)
    pattern = re.sub(r"\\\{\w+\\\}", "([^/]+)", re.escape(resource))
    found = re.fullmatch(pattern, parts.path)
    path_parameters = dict(zip(names, found.groups(), strict=True)) if found and names else None
    headers = {"Authorization": f"Bearer {token}", "Host": "localhost"}
    body = None
    if method == "POST" and resource.endswith("/search"):
        headers["Content-Type"] = "application/json"
        body = '{"query": "apple"}'
    return {
        "resource": resource,
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/local{parts.path}",
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def main(argv: list[str]) -> int:
    result_file, rest = argv[0], argv[1:]
    xray = rest[:1] == ["--xray"]
    if xray:
        rest = rest[1:]
    routes = list(zip(rest[::3], rest[1::3], rest[2::3], strict=True))

    import app as app_module  # the cold import under test: nothing of this test's machinery before it

    loaded_by_import = sorted(m for m in OPTIONAL if m in sys.modules)

    import boto3
    from moto import mock_aws

    from chalicelib import bootstrap
    from infra.local.lambda_runtime import LambdaContext
    from infra.local.replay.transport import YahooReplayTransport
    from infra.local.tables import create_tables
    from infra.local.token import issue_dev_token

    segments: list[str] = []
    if xray:
        from aws_xray_sdk.core import xray_recorder  # type: ignore[import-untyped]

        class Capture:
            """An emitter that keeps what the recorder would send to the X-Ray daemon."""

            def send_entity(self, entity: Any) -> None:
                stack = [entity.to_dict()]
                while stack:
                    item = stack.pop()
                    segments.append(str(item.get("name")))
                    stack.extend(item.get("subsegments", []))

            def set_daemon_address(self, address: str | None) -> None:  # noqa: ARG002 - the emitter interface
                return None

        xray_recorder.configure(emitter=Capture())

    statuses: list[dict[str, Any]] = []
    with mock_aws():
        create_tables(boto3.client("dynamodb", region_name="us-east-1"), "local")
        bootstrap.install_replay_transport(YahooReplayTransport())
        token = issue_dev_token(operator=True)
        for method, resource, path in routes:
            event = api_event(method, resource, path, token)
            response = app_module.app(event, LambdaContext(function_name="api_handler", timeout_seconds=28))
            statuses.append({"method": method, "path": path, "status": response["statusCode"]})
    with open(result_file, "w") as f:  # noqa: PTH123 - a plain text file
        json.dump({"loaded_by_import": loaded_by_import, "routes": statuses, "segments": segments}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
