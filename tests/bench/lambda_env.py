"""What the cold-start and handler benchmarks share: a Redis of their own holding a cached AAPL quote,
an identity provider serving RS256 keys (JWKS) on a local port, the prod stage's environment pointed at
both, and the API Gateway event of `GET /api/v1/market/quote/AAPL`.

The cached quote is FMP's recorded AAPL answer (tests/fixtures/providers/fmp/quote_stable_AAPL.json)
mapped by the FMP adapter, stored as the read-through cache stores it: no invented prices.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from chalicelib.adapters.providers.calls import JsonReply, QuoteAsk
from chalicelib.adapters.providers.fmp import quote as fmp_quote
from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.services.market_data import stored_document
from infra.local.run import free_port
from tests.conftest import REPO_ROOT

SYMBOL = "AAPL"
QUOTE_PATH = f"/api/v1/market/quote/{SYMBOL}"
QUOTE_RESOURCE = "/api/v1/market/quote/{symbol}"
ISSUER = "https://idp.bench.example.com/"
AUDIENCE = "market-data-bench"
KID = "bench-key-1"
CORS_ORIGINS = "https://dashboard.example.com"
FUNCTION_NAME = "market-data-prod"
RECORDED_QUOTE = REPO_ROOT / "tests" / "fixtures" / "providers" / "fmp" / "quote_stable_AAPL.json"
# Values the deployed stack would supply (stack outputs); the benches need plausible ones only.
STACK_VALUES = {
    "ConnectionsTableName": "market-data-prod-connections",
    "SubscriptionsTableName": "market-data-prod-subscriptions",
    "RegistryTableName": "market-data-prod-registry",
    "JobRunsTableName": "market-data-prod-job-runs",
    "WebSocketManagementEndpoint": "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
    "JwtIssuer": ISSUER,
    "JwtAudience": AUDIENCE,
    "CorsAllowedOrigins": CORS_ORIGINS,
}


def seed_cached_quote(redis_url: str, *, key_prefix: str = "mkt:", fresh_seconds: float = 3600) -> None:
    """AAPL in the cache, fresh for ``fresh_seconds`` (the benches must see hits only)."""
    ask = QuoteAsk(
        provider="fmp", base_url="https://financialmodelingprep.com", clock=lambda: datetime.now(UTC), symbols=[SYMBOL]
    )
    quote = fmp_quote.parse(JsonReply(status=200, payload=json.loads(RECORDED_QUOTE.read_text())), ask)[SYMBOL]
    cache = RedisCache(redis.Redis.from_url(redis_url), key_prefix=key_prefix)
    cache.set(
        f"quote:{SYMBOL}",
        stored_document(quote, "fmp", datetime.now(UTC)),
        fresh_ttl_seconds=fresh_seconds,
        stale_ttl_seconds=fresh_seconds,
    )


class Identity:
    """An RS256 identity provider: its JWKS on a local port, and tokens it signs."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update(kid=KID, use="sig", alg="RS256")
        body = json.dumps({"keys": [jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return None

        # HTTPS, as a deployed stage requires: a self-signed certificate for 127.0.0.1, trusted by the
        # function through SSL_CERT_FILE (``environment()``).
        self._tls_dir = Path(tempfile.mkdtemp(prefix="bench-idp-"))
        self.ca_file = self._tls_dir / "cert.pem"
        key_file = self._tls_dir / "key.pem"
        _self_signed_localhost(self.ca_file, key_file)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.ca_file, key_file)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.jwks_url = f"https://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def token(self, subject: str = "bench-user", lifetime_seconds: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + lifetime_seconds}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KID})

    def environment(self) -> dict[str, str]:
        return {"JWT_JWKS_URL": self.jwks_url, "SSL_CERT_FILE": str(self.ca_file)}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._tls_dir, ignore_errors=True)


def _self_signed_localhost(cert_file: Path, key_file: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def prod_environment(redis_url: str, identity: Identity, *, task_root: str, tracing: bool) -> dict[str, str]:
    """The REST function's environment in the prod stage (.chalice/config.json: global, stage and
    function variables), with the stack's values filled in, pointed at the bench's Redis and identity
    provider, plus what the Lambda runtime sets. The *_SECRET_ARN variables are left out: there is no
    Secrets Manager here (in AWS the first container build makes those calls, through the runtime's boto3)."""
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text())
    stage = config["stages"]["prod"]
    function = stage.get("lambda_functions", {}).get("api_handler", {})
    merged: dict[str, str] = {
        **config.get("environment_variables", {}),
        **stage.get("environment_variables", {}),
        **function.get("environment_variables", {}),
    }
    env: dict[str, str] = {}
    for name, value in merged.items():
        if name.endswith("_SECRET_ARN") or name == "REDIS_URL":
            continue
        if value.startswith(("from-stack:", "from-deploy:")):
            output = value.split(":", 1)[1]
            if output not in STACK_VALUES:
                continue
            value = STACK_VALUES[output]
        env[name] = value
    env.update(
        {
            "REDIS_URL": redis_url,
            **identity.environment(),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(stage.get("lambda_memory_size", 1024)),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "LAMBDA_TASK_ROOT": task_root,
            "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
        }
    )
    if tracing:
        # What Lambda sets for a sampled invocation; segments go to a UDP port nobody listens on.
        env["_X_AMZN_TRACE_ID"] = (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"
        )
        env["AWS_XRAY_DAEMON_ADDRESS"] = f"127.0.0.1:{free_port()}"
        env["AWS_XRAY_CONTEXT_MISSING"] = "LOG_ERROR"
    return env


def quote_event(token: str) -> dict[str, Any]:
    """API Gateway's REST proxy event (payload 1.0) for GET /api/v1/market/quote/AAPL."""
    request_id = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}", "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    return {
        "resource": QUOTE_RESOURCE,
        "path": QUOTE_PATH,
        "httpMethod": "GET",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"symbol": SYMBOL},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": QUOTE_RESOURCE,
            "httpMethod": "GET",
            "path": f"/prod{QUOTE_PATH}",
            "stage": "prod",
            "requestId": request_id,
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "bench"},
            "apiId": "abc123",
        },
        "body": None,
        "isBase64Encoded": False,
    }


def lambda_context_source() -> str:
    """A minimal Lambda context class, as source: the cold-start probe runs outside the venv."""
    return """
class Context:
    function_name = "market-data-prod"
    function_version = "$LATEST"
    memory_limit_in_mb = "1024"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:market-data-prod"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/market-data-prod"
    log_stream_name = "bench"
    def __init__(self):
        import time
        self._deadline = time.monotonic() + 28
    def get_remaining_time_in_millis(self):
        import time
        return max(0, int((self._deadline - time.monotonic()) * 1000))
"""


def read_only_copy(source: Path, target: Path) -> None:
    """Make ``target`` a read-only tree (as Lambda's /var/task is) holding ``source``."""
    shutil.copytree(source, target, symlinks=True)
    for path in sorted(target.rglob("*"), reverse=True):
        if not path.is_symlink():
            path.chmod(0o555 if path.is_dir() else 0o444)
    target.chmod(0o555)


def make_writable(target: Path) -> None:
    if not target.exists():
        return
    target.chmod(0o755)
    for path in target.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
