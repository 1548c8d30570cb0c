"""Environment → typed settings, validated once per container (cold start).

Every variable the service reads is declared here and nowhere else. A bad value fails at cold start
with a message naming the variable, instead of surfacing later as an obscure runtime error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

from chalicelib.errors import ConfigurationError
from chalicelib.settings_lists import DEFAULT_POPULAR_SYMBOLS, REPLAY_POPULAR_SYMBOLS, split_origins, split_symbols


class Stage(StrEnum):
    LOCAL = "local"
    DEV = "dev"
    PROD = "prod"


class DataSource(StrEnum):
    LIVE = "live"
    REPLAY = "replay"
    # The deploy rehearsal only (infra/rehearsal): replay data served over HTTP by a local server, for
    # functions running in an emulator on this machine. Refused anywhere AWS calls reach AWS.
    REHEARSAL = "rehearsal"


class FanoutDispatch(StrEnum):
    LAMBDA = "lambda"  # one asynchronous fanout_worker invocation per shard (AWS, and `make run`)
    INLINE = "inline"  # the publishing function delivers every shard itself (tests without a Lambda API)


class JwtAlgorithm(StrEnum):
    HS256 = "HS256"
    RS256 = "RS256"


# The DynamoDB table settings. Each defaults to infra/template.yaml's `market-data-<stage>-<table>`, where
# <table> is the setting's name without "_table", dashed: job_runs_table → market-data-dev-job-runs.
_TABLE_FIELDS = ("connections_table", "subscriptions_table", "registry_table", "job_runs_table")


SECRETS_MANAGER_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"

# DynamoDB's own rule for table names.
TableName = Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.\-]+$")]

# The dev secret is public (it is in this file). It is accepted only in the local stage.
LOCAL_DEV_JWT_SECRET = "local-dev-secret-change-me-0123456789abcdef"  # noqa: S105 - documented dev default
# What infra/local/token.py issues and the local stage accepts. Outside the local stage they are refused:
# a deployed stage names its identity provider's issuer and audience, and its dashboard's origins.
LOCAL_JWT_ISSUER = "market-data-local"
LOCAL_JWT_AUDIENCE = "market-data-dashboard"
LOCAL_CORS_ORIGINS = ("http://localhost:3000", "http://localhost:5173")


_LOOPBACK_HTTP_URL = r"^http://(127\.0\.0\.1|localhost)(:\d{1,5})?(/.*)?$"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Stage = Stage.LOCAL
    market_data_source: DataSource = DataSource.LIVE

    # MARKET_DATA_SOURCE=rehearsal only: the local server answering the providers' requests.
    rehearsal_provider_url: str | None = Field(default=None, pattern=_LOOPBACK_HTTP_URL)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^rediss?://")
    redis_socket_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    cache_key_prefix: str = Field(default="mkt:", max_length=64, pattern=r"^[A-Za-z0-9:_\-.]*$")
    cache_stale_ttl_seconds: int = Field(default=24 * 3600, ge=0)
    cache_lock_ttl_seconds: float = Field(default=5.0, gt=0, le=60)
    cache_lock_wait_seconds: float = Field(default=2.0, ge=0, le=25)
    # The hot set: quotes read within the window (at most this many, most recent kept), refreshed ahead
    # of readers by the quote job (README "Refresh-ahead").
    quote_hot_set_max_symbols: int = Field(default=2000, ge=1, le=100_000)
    quote_hot_set_window_seconds: float = Field(default=600.0, gt=0, le=86_400)

    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.HS256
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    jwt_issuer: str = LOCAL_JWT_ISSUER
    jwt_audience: str = LOCAL_JWT_AUDIENCE
    jwt_leeway_seconds: int = Field(default=0, ge=0, le=300)

    connections_table: TableName
    subscriptions_table: TableName
    registry_table: TableName
    job_runs_table: TableName

    aws_endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    aws_region: str = "us-east-1"

    alpha_vantage_api_key: SecretStr | None = None
    financial_modeling_prep_api_key: SecretStr | None = None
    tiingo_api_key: SecretStr | None = None

    provider_timeout_seconds: float = Field(default=4.0, gt=0, le=25)
    yfinance_cache_dir: str = Field(default="/tmp/yfinance-cache", pattern=r"^/")  # noqa: S108 - Lambda's only writable path

    # Shared quotas per provider (the spec's "Rate Limiting Configuration"); 0 disables that window.
    yahoo_quota_per_minute: int = Field(default=2000, ge=0)
    yahoo_quota_per_day: int = Field(default=100_000, ge=0)
    fmp_quota_per_minute: int = Field(default=250, ge=0)
    fmp_quota_per_day: int = Field(default=10_000, ge=0)
    alpha_vantage_quota_per_minute: int = Field(default=5, ge=0)
    alpha_vantage_quota_per_day: int = Field(default=500, ge=0)
    tiingo_quota_per_minute: int = Field(default=1000, ge=0)
    tiingo_quota_per_day: int = Field(default=50_000, ge=0)

    provider_max_attempts: int = Field(default=3, ge=1, le=10)
    provider_retry_base_seconds: float = Field(default=0.2, ge=0, le=10)
    provider_retry_max_seconds: float = Field(default=2.0, ge=0, le=30)
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)

    # The per-user budget per minute: a request costs 1, plus USER_UPSTREAM_CALL_COST per provider call
    # it caused (a cache miss costs more than a hit; the vendors' quotas are shared by every user).
    user_rate_limit_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    user_upstream_call_cost: int = Field(default=20, ge=0, le=10_000)
    # How long "no such symbol" is remembered per data kind (a repeated unknown ticker costs nothing upstream).
    negative_cache_ttl_seconds: int = Field(default=300, ge=0, le=86_400)
    # A provider response is read up to this many bytes and for at most this long in all (a trickling
    # or huge answer is cut: a vendor failure); per-read timeouts alone let a trickle hold the Lambda.
    provider_response_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    provider_response_deadline_seconds: float = Field(default=8.0, gt=0, le=60)
    # Operator endpoints need a role the identity provider issues: membership of this group
    # (`cognito:groups`) or this OAuth scope (`scope`); empty disables that way in.
    operator_group: str = Field(default="operators", max_length=128, pattern=r"^[^\s]*$")
    operator_scope: str = Field(default="market-data/operator", max_length=256, pattern=r"^[^\s]*$")
    # Comma-separated origins allowed by CORS (the dashboard's). The localhost default serves the local
    # stage only: a deployed stage must set its https origins explicitly (_check_deployed_identity).
    cors_allowed_origins: Annotated[tuple[str, ...], BeforeValidator(split_origins)] = LOCAL_CORS_ORIGINS

    # The dashboard page (GET /): the WebSocket URL it connects to (default: locally the gateway the page
    # came from; deployed, wss:// of WEBSOCKET_MANAGEMENT_ENDPOINT) and where it sends a user for a token.
    dashboard_websocket_url: str | None = Field(
        default=None, pattern=r"^wss?://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~/\-]*)?$"
    )
    dashboard_login_url: str | None = Field(default=None, pattern=r"^https?://[^\s\"'<>]+$")

    # The API Gateway management API (post_to_connection). In AWS it is derived from the WebSocket event
    # (https://{domain}/{stage}) when unset; jobs, which have no such event, need it set (stack output).
    websocket_management_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    ws_max_connections_per_user: int = Field(default=5, ge=1, le=1000)
    ws_max_subscriptions_per_connection: int = Field(default=50, ge=1, le=1000)
    # The service's own cap on a client message; API Gateway itself closes past 128 KB (code 1009).
    ws_max_message_bytes: int = Field(default=16 * 1024, ge=256, le=128 * 1024)
    ws_fanout_concurrency: int = Field(default=32, ge=1, le=256)
    # A batch frame's encoded size cap: API Gateway bills (and frames) WebSocket messages in 32 KB steps.
    ws_max_frame_bytes: int = Field(default=32 * 1024, ge=1024, le=128 * 1024)
    # At most one {"type":"resync"} per connection in this many seconds (a snapshot is many cache reads).
    ws_resync_interval_seconds: int = Field(default=10, ge=0, le=3600)
    # Fan-out shards: a connection's shard is a stable hash of its id modulo this count, fixed at
    # $connect. Lowering it strands the higher shards' connections until they reconnect (at most 2 h).
    ws_shard_count: int = Field(default=16, ge=1, le=1024)
    # Distinct symbols one user may stream, over all its connections (each costs a refresh every minute).
    ws_max_symbols_per_user: int = Field(default=100, ge=1, le=10_000)
    # Client-message budgets (token buckets in Redis): a message costs units by type (subscribe,
    # unsubscribe, resync 5, ping 1: services.streaming.MESSAGE_COSTS), taken from its connection's bucket
    # and its user's. Capacity is the burst, refill the sustained rate; a capacity below the largest cost
    # would refuse those messages forever, hence ge=5.
    ws_budget_connection_capacity: int = Field(default=60, ge=5, le=100_000)
    ws_budget_connection_refill_per_second: float = Field(default=1.0, gt=0, le=10_000)
    ws_budget_user_capacity: int = Field(default=150, ge=5, le=1_000_000)
    ws_budget_user_refill_per_second: float = Field(default=2.5, gt=0, le=100_000)
    # A connection refused this many times within the window is closed through the management API.
    ws_budget_close_after_rejections: int = Field(default=10, ge=1, le=10_000)
    ws_budget_rejection_window_seconds: int = Field(default=60, ge=1, le=3600)
    # Deployed stages set lambda (.chalice/config.json) and so does `make run`; inline suits a process
    # without a Lambda API to call (tests, a one-off script).
    fanout_dispatch: FanoutDispatch = FanoutDispatch.INLINE
    # The shard worker's function; default: `chalice deploy`'s name for it, market-data-<stage>-fanout_worker.
    fanout_function_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_:.\-]{1,140}$")

    # Refreshed every minute and warmed every 6 h besides whatever is subscribed (comma-separated).
    job_popular_symbols: Annotated[tuple[str, ...], BeforeValidator(split_symbols)] = DEFAULT_POPULAR_SYMBOLS
    # A quote refresh run's total: subscribed and popular symbols always, hot symbols up to this many in
    # all (5 Yahoo calls of 200 at the default; bounds the run's time and quota whatever readers do).
    job_quote_refresh_max_symbols: int = Field(default=1000, ge=0, le=100_000)
    job_run_retention_days: int = Field(default=7, ge=1, le=365)
    # Consecutive failed runs after which /jobs/status calls a job "failing".
    job_failing_after: int = Field(default=3, ge=1, le=100)

    # Resolved into JWT_SECRET, the provider keys and REDIS_URL's password at cold start
    # (chalicelib/adapters/secrets.py); declared here so a malformed ARN fails naming the variable.
    jwt_secret_arn: str | None = Field(default=None, pattern=SECRETS_MANAGER_ARN_PATTERN)
    provider_keys_secret_arn: str | None = Field(default=None, pattern=SECRETS_MANAGER_ARN_PATTERN)
    redis_auth_secret_arn: str | None = Field(default=None, pattern=SECRETS_MANAGER_ARN_PATTERN)

    @property
    def fanout_worker_function(self) -> str:
        return self.fanout_function_name or f"market-data-{self.stage.value}-fanout_worker"

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.market_data_source is DataSource.REPLAY and self.stage is not Stage.LOCAL:
            raise ValueError(
                "MARKET_DATA_SOURCE=replay is refused outside the local stage "
                f"(STAGE={self.stage.value}); a deployed stage must serve live data"
            )
        if self.market_data_source is DataSource.REHEARSAL:
            # On AWS the SDK's endpoint is AWS's, never this machine: a real stage cannot pass this.
            if not self.aws_endpoint_url or not re.match(_LOOPBACK_HTTP_URL, self.aws_endpoint_url):
                raise ValueError(
                    "MARKET_DATA_SOURCE=rehearsal is refused unless every AWS call goes to an emulator on this "
                    "machine (AWS_ENDPOINT_URL=http://127.0.0.1:...); a deployed stage must serve live data"
                )
            if not self.rehearsal_provider_url:
                raise ValueError("MARKET_DATA_SOURCE=rehearsal needs REHEARSAL_PROVIDER_URL (the local replay server)")
        elif self.rehearsal_provider_url:
            raise ValueError("REHEARSAL_PROVIDER_URL is only for MARKET_DATA_SOURCE=rehearsal")
        if self.jwt_algorithm is JwtAlgorithm.HS256:
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if self.stage is not Stage.LOCAL and (not secret or secret == LOCAL_DEV_JWT_SECRET):
                raise ValueError("JWT_SECRET must be set to a private value outside the local stage")
            if secret and len(secret) < 32:
                raise ValueError("JWT_SECRET must be at least 32 characters (RFC 7518 §3.2 for HS256)")
        elif not self.jwt_jwks_url:
            raise ValueError("JWT_JWKS_URL is required when JWT_ALGORITHM=RS256")
        if self.jwt_jwks_url and self.stage is not Stage.LOCAL and not self.jwt_jwks_url.startswith("https://"):
            raise ValueError("JWT_JWKS_URL must use https outside the local stage")
        return self

    @model_validator(mode="after")
    def _check_deployed_identity(self) -> Settings:
        """Outside the local stage nothing identity- or origin-related may silently fall back to the local
        defaults: a token minted for the local stack (`make token`) would otherwise be accepted by a
        deployed API whose secret leaked, and any localhost page could read its responses. infra/deploy.py
        runs this same check before it deploys anything."""
        if self.stage is Stage.LOCAL:
            return self
        if self.jwt_issuer == LOCAL_JWT_ISSUER:
            raise ValueError(
                f"JWT_ISSUER must be set to the identity provider's issuer outside the local stage "
                f"(it is the local default {LOCAL_JWT_ISSUER!r})"
            )
        if self.jwt_audience == LOCAL_JWT_AUDIENCE:
            raise ValueError(
                f"JWT_AUDIENCE must be set to this API's audience outside the local stage "
                f"(it is the local default {LOCAL_JWT_AUDIENCE!r})"
            )
        if "cors_allowed_origins" not in self.model_fields_set:
            raise ValueError(
                "CORS_ALLOWED_ORIGINS must be set explicitly outside the local stage "
                "(the dashboard's https origins, comma-separated)"
            )
        insecure = [origin for origin in self.cors_allowed_origins if not origin.startswith("https://")]
        if insecure:
            raise ValueError(f"CORS_ALLOWED_ORIGINS must be https outside the local stage: {', '.join(insecure)}")
        if self.dashboard_login_url and not self.dashboard_login_url.startswith("https://"):
            raise ValueError("DASHBOARD_LOGIN_URL must be https outside the local stage")
        if self.dashboard_websocket_url and not self.dashboard_websocket_url.startswith("wss://"):
            raise ValueError("DASHBOARD_WEBSOCKET_URL must be wss:// outside the local stage")
        return self

    @model_validator(mode="before")
    @classmethod
    def _replay_popular_symbols(cls, data: Any) -> Any:
        """In replay the popular list defaults to symbols the replay universe holds."""
        replayed = (DataSource.REPLAY.value, DataSource.REHEARSAL.value)  # the rehearsal serves replay data too
        if isinstance(data, dict) and str(data.get("market_data_source", "")).lower() in replayed:
            data = dict(data)  # never change the caller's mapping
            data.setdefault("job_popular_symbols", REPLAY_POPULAR_SYMBOLS)
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_table_names(cls, data: Any) -> Any:
        """Table names follow infra/template.yaml's `market-data-<stage>-<table>` unless set explicitly."""
        if isinstance(data, dict):
            data = dict(data)  # never change the caller's mapping
            stage = str(data.get("stage", Stage.LOCAL.value))
            for field in _TABLE_FIELDS:
                data.setdefault(field, f"market-data-{stage}-{field.removesuffix('_table').replace('_', '-')}")
        return data

    @property
    def effective_jwt_secret(self) -> str:
        """The HS256 secret: the configured one, or the public dev default in the local stage."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return LOCAL_DEV_JWT_SECRET


# Environment variable → field name: every field is read from its name in capitals (the spec's own
# variable names, e.g. REDIS_URL, ALPHA_VANTAGE_API_KEY), so a new setting cannot miss its variable.
ENV_VARS: dict[str, str] = {field.upper(): field for field in Settings.model_fields}
_FIELD_TO_ENV = {field: env for env, field in ENV_VARS.items()}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment; raise ConfigurationError naming the bad variable."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for var, field in ENV_VARS.items():
        value = env.get(var)
        if value is not None and value.strip() != "":
            raw[field] = value.strip()
    # Lambda sets AWS_REGION; boto3 users often set AWS_DEFAULT_REGION only.
    default_region = (env.get("AWS_DEFAULT_REGION") or "").strip()
    if "aws_region" not in raw and default_region:
        raw["aws_region"] = default_region
    try:
        return Settings(**raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            field = str(loc[0]) if loc else ""
            name = _FIELD_TO_ENV.get(field)
            message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            problems.append(f"{name}: {message}" if name else message)
        # `from None`: pydantic's own error text repeats the raw input, API keys included.
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
