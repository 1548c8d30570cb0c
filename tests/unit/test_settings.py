"""Settings: environment → typed, validated configuration (chalicelib/settings.py).

Pure tests: every case passes an explicit ``environ`` dict, so the developer's shell cannot leak in.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

from chalicelib.errors import ConfigurationError
from chalicelib.settings import (
    LOCAL_DEV_JWT_SECRET,
    DataSource,
    JwtAlgorithm,
    Stage,
    load_settings,
)
from chalicelib.settings_lists import DEFAULT_POPULAR_SYMBOLS, REPLAY_POPULAR_SYMBOLS

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "infra" / "template.yaml"

PRIVATE_SECRET = "p" * 40  # a private (non-default) HS256 secret, long enough
JWKS_URL = "https://idp.example.com/.well-known/jwks.json"
# What every deployed stage must name explicitly (the local defaults are refused outside local).
DEPLOYED_IDENTITY = {
    "JWT_ISSUER": "https://idp.example.com/",
    "JWT_AUDIENCE": "market-data-api",
    "CORS_ALLOWED_ORIGINS": "https://dashboard.example.com",
}


def config_error(environ: dict[str, str]) -> ConfigurationError:
    """Load ``environ`` and return the ConfigurationError it must raise."""
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ=environ)
    return info.value


# --- defaults -------------------------------------------------------------------------------------------


def test_defaults_are_a_valid_local_configuration() -> None:
    """GIVEN an empty environment WHEN settings load THEN the local, live, HS256 dev setup results."""
    settings = load_settings(environ={})

    assert settings.stage is Stage.LOCAL
    assert settings.market_data_source is DataSource.LIVE
    assert settings.jwt_algorithm is JwtAlgorithm.HS256
    assert settings.jwt_secret is None
    assert settings.effective_jwt_secret == LOCAL_DEV_JWT_SECRET
    assert settings.jwt_jwks_url is None
    assert settings.jwt_issuer == "market-data-local"
    assert settings.jwt_audience == "market-data-dashboard"
    assert settings.jwt_leeway_seconds == 0
    assert settings.redis_url.startswith("redis://")
    assert settings.aws_region == "us-east-1"
    assert settings.aws_endpoint_url is None
    assert settings.yfinance_cache_dir.startswith("/")
    assert (settings.connections_table, settings.subscriptions_table, settings.job_runs_table) == (
        "market-data-local-connections",
        "market-data-local-subscriptions",
        "market-data-local-job-runs",
    )
    assert settings.registry_table == "market-data-local-registry"
    assert settings.ws_shard_count == 16


def test_default_table_names_match_the_template_for_stage_local() -> None:
    """The CloudFormation template is the source of truth for table names; the defaults must follow it."""
    template_names = {
        name.replace("${Stage}", "local") for name in re.findall(r'TableName:\s*!Sub\s*"([^"]+)"', TEMPLATE.read_text())
    }
    settings = load_settings(environ={})

    assert template_names == {
        settings.connections_table,
        settings.subscriptions_table,
        settings.registry_table,
        settings.job_runs_table,
    }


def test_reads_os_environ_when_no_mapping_is_given(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CACHE_KEY_PREFIX", "from-os-environ:")

    assert load_settings().cache_key_prefix == "from-os-environ:"


# --- one bad value → ConfigurationError naming the variable ----------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "http://x"),
        ("REDIS_URL", "localhost:6379"),
        ("STAGE", "qa"),
        ("STAGE", "PROD"),
        ("MARKET_DATA_SOURCE", "file"),
        ("PROVIDER_TIMEOUT_SECONDS", "abc"),
        ("PROVIDER_TIMEOUT_SECONDS", "0"),
        ("PROVIDER_TIMEOUT_SECONDS", "60"),
        ("REDIS_SOCKET_TIMEOUT_SECONDS", "-1"),
        ("CACHE_KEY_PREFIX", "mkt prefix:"),
        ("QUOTE_HOT_SET_MAX_SYMBOLS", "0"),
        ("QUOTE_HOT_SET_WINDOW_SECONDS", "0"),
        ("JOB_QUOTE_REFRESH_MAX_SYMBOLS", "-1"),
        ("CACHE_KEY_PREFIX", "x" * 65),
        ("CACHE_STALE_TTL_SECONDS", "-5"),
        ("CACHE_LOCK_TTL_SECONDS", "0"),
        ("JWT_ALGORITHM", "none"),
        ("JWT_ALGORITHM", "HS512"),
        ("JWT_JWKS_URL", "idp.example.com/jwks.json"),
        ("JWT_LEEWAY_SECONDS", "301"),
        ("AWS_ENDPOINT_URL", "localhost:4566"),
        ("YFINANCE_CACHE_DIR", "relative/path"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    error = config_error({variable: value})

    assert variable in error.message
    assert error.code == "configuration_error"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROVIDER_TIMEOUT_SECONDS", "25"),
        ("PROVIDER_TIMEOUT_SECONDS", "0.5"),
        ("REDIS_URL", "rediss://cache.internal:6380/1"),
        ("CACHE_KEY_PREFIX", "mkt-v2.test_1:"),
        ("AWS_ENDPOINT_URL", "http://localhost:4566"),
        ("YFINANCE_CACHE_DIR", "/srv/market-data/yf"),
        ("JWT_LEEWAY_SECONDS", "300"),
        ("QUOTE_HOT_SET_MAX_SYMBOLS", "1"),
        ("QUOTE_HOT_SET_WINDOW_SECONDS", "0.5"),
        ("JOB_QUOTE_REFRESH_MAX_SYMBOLS", "0"),
    ],
)
def test_boundary_and_well_formed_values_are_accepted(variable: str, value: str) -> None:
    """The refusals above are about the value, not the variable: a good value of each loads."""
    load_settings(environ={variable: value})


def test_every_bad_variable_is_named_when_several_are_wrong() -> None:
    error = config_error({"STAGE": "qa", "REDIS_URL": "http://x", "YFINANCE_CACHE_DIR": "rel"})

    for variable in ("STAGE", "REDIS_URL", "YFINANCE_CACHE_DIR"):
        assert variable in error.message


# --- replay only in the local stage ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_replay_is_refused_outside_the_local_stage(stage: str) -> None:
    """GIVEN a deployed stage (otherwise valid) WHEN MARKET_DATA_SOURCE=replay THEN the load fails."""
    error = config_error({"STAGE": stage, "MARKET_DATA_SOURCE": "replay", "JWT_SECRET": PRIVATE_SECRET})

    assert "MARKET_DATA_SOURCE" in error.message


# --- the deploy rehearsal's source: only where every AWS call goes to an emulator on this machine -------

REHEARSAL = {"MARKET_DATA_SOURCE": "rehearsal", "REHEARSAL_PROVIDER_URL": "http://127.0.0.1:8123"}


@pytest.mark.parametrize("endpoint", [None, "https://dynamodb.us-east-1.amazonaws.com", "http://10.0.0.5:4566"])
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_rehearsal_source_is_refused_where_aws_calls_reach_aws(stage: str, endpoint: str | None) -> None:
    """GIVEN a deployed stage WHEN MARKET_DATA_SOURCE=rehearsal without an emulator on loopback (as on
    AWS, where Lambda sets no AWS_ENDPOINT_URL) THEN the load fails naming the source."""
    environ = {"STAGE": stage, "JWT_SECRET": PRIVATE_SECRET, **DEPLOYED_IDENTITY, **REHEARSAL}
    if stage == "prod":
        environ |= {"JWT_ALGORITHM": "RS256", "JWT_JWKS_URL": JWKS_URL}
    if endpoint:
        environ["AWS_ENDPOINT_URL"] = endpoint

    error = config_error(environ)

    assert "MARKET_DATA_SOURCE=rehearsal is refused" in error.message


def test_the_rehearsal_source_runs_the_deployed_stage_in_an_emulator_on_this_machine() -> None:
    environ = {"STAGE": "dev", "JWT_SECRET": PRIVATE_SECRET, **DEPLOYED_IDENTITY, **REHEARSAL}

    settings = load_settings({**environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})

    assert settings.market_data_source is DataSource.REHEARSAL
    assert settings.rehearsal_provider_url == "http://127.0.0.1:8123"
    assert settings.job_popular_symbols == REPLAY_POPULAR_SYMBOLS  # it serves replay data


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MARKET_DATA_SOURCE": "rehearsal", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}, "REHEARSAL_PROVIDER_URL"),
        ({"REHEARSAL_PROVIDER_URL": "http://127.0.0.1:8123"}, "REHEARSAL_PROVIDER_URL"),
        ({**REHEARSAL, "REHEARSAL_PROVIDER_URL": "https://query1.finance.yahoo.com"}, "REHEARSAL_PROVIDER_URL"),
    ],
)
def test_the_rehearsal_provider_url_goes_with_the_rehearsal_source_and_loopback_only(
    environ: dict[str, str], named: str
) -> None:
    error = config_error({"STAGE": "local", **environ})

    assert named in error.message


def test_replay_is_allowed_in_the_local_stage() -> None:
    settings = load_settings(environ={"STAGE": "local", "MARKET_DATA_SOURCE": "replay"})

    assert settings.market_data_source is DataSource.REPLAY


# --- JWT secret and algorithm ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["local", "dev", "prod"])
def test_a_secret_shorter_than_32_characters_is_refused(stage: str) -> None:
    error = config_error({"STAGE": stage, "JWT_SECRET": "s" * 31})

    assert "JWT_SECRET" in error.message


def test_a_32_character_secret_is_the_minimum_accepted() -> None:
    settings = load_settings(environ={**DEPLOYED_IDENTITY, "STAGE": "dev", "JWT_SECRET": "s" * 32})

    assert settings.effective_jwt_secret == "s" * 32


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("secret", [None, LOCAL_DEV_JWT_SECRET], ids=["unset", "public-dev-secret"])
def test_deployed_hs256_stage_needs_a_private_secret(stage: str, secret: str | None) -> None:
    environ = {"STAGE": stage}
    if secret is not None:
        environ["JWT_SECRET"] = secret

    error = config_error(environ)

    assert "JWT_SECRET" in error.message


def test_the_public_dev_secret_is_accepted_in_the_local_stage() -> None:
    settings = load_settings(environ={"STAGE": "local", "JWT_SECRET": LOCAL_DEV_JWT_SECRET})

    assert settings.effective_jwt_secret == LOCAL_DEV_JWT_SECRET


def test_a_private_40_character_secret_is_accepted_in_dev() -> None:
    settings = load_settings(environ={**DEPLOYED_IDENTITY, "STAGE": "dev", "JWT_SECRET": PRIVATE_SECRET})

    assert settings.stage is Stage.DEV
    assert settings.effective_jwt_secret == PRIVATE_SECRET


def test_rs256_without_a_jwks_url_is_refused() -> None:
    error = config_error({"JWT_ALGORITHM": "RS256"})

    assert "JWT_JWKS_URL" in error.message


@pytest.mark.parametrize("stage", ["local", "prod"])
def test_rs256_with_a_jwks_url_is_accepted_without_any_secret(stage: str) -> None:
    """RS256 verifies against the JWKS: no HS256 secret is required, even in prod (the prod config)."""
    settings = load_settings(
        environ={**DEPLOYED_IDENTITY, "STAGE": stage, "JWT_ALGORITHM": "RS256", "JWT_JWKS_URL": JWKS_URL}
    )

    assert settings.jwt_algorithm is JwtAlgorithm.RS256
    assert settings.jwt_jwks_url == JWKS_URL


# --- identity and CORS outside the local stage --------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize(
    ("left_out", "variable"),
    [("JWT_ISSUER", "JWT_ISSUER"), ("JWT_AUDIENCE", "JWT_AUDIENCE"), ("CORS_ALLOWED_ORIGINS", "CORS_ALLOWED_ORIGINS")],
)
def test_a_deployed_stage_refuses_the_local_identity_defaults(stage: str, left_out: str, variable: str) -> None:
    """GIVEN a deployed stage that leaves one of issuer, audience or CORS origins unset (the local default)
    WHEN settings load THEN the load fails naming that variable (and the deploy, which runs this check)."""
    environ = {**DEPLOYED_IDENTITY, "STAGE": stage, "JWT_SECRET": PRIVATE_SECRET}
    del environ[left_out]

    assert variable in config_error(environ).message


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize(
    ("name", "value"),
    [("JWT_ISSUER", "market-data-local"), ("JWT_AUDIENCE", "market-data-dashboard")],
)
def test_a_deployed_stage_refuses_the_local_values_even_when_set_explicitly(stage: str, name: str, value: str) -> None:
    error = config_error({**DEPLOYED_IDENTITY, "STAGE": stage, "JWT_SECRET": PRIVATE_SECRET, name: value})

    assert name in error.message


@pytest.mark.parametrize(
    "origins",
    ["http://dashboard.example.com", "https://dashboard.example.com,http://localhost:3000"],
)
def test_a_deployed_stage_allows_https_origins_only(origins: str) -> None:
    environ = {**DEPLOYED_IDENTITY, "STAGE": "prod", "JWT_SECRET": PRIVATE_SECRET, "CORS_ALLOWED_ORIGINS": origins}

    error = config_error(environ)

    assert "CORS_ALLOWED_ORIGINS" in error.message
    assert "https" in error.message


def test_the_local_stage_keeps_its_defaults() -> None:
    settings = load_settings(environ={"STAGE": "local"})

    assert settings.cors_allowed_origins == ("http://localhost:3000", "http://localhost:5173")
    assert (settings.jwt_issuer, settings.jwt_audience) == ("market-data-local", "market-data-dashboard")


# --- blank values, whitespace ----------------------------------------------------------------------------


def test_blank_values_count_as_unset() -> None:
    """GIVEN variables set to '' or whitespace WHEN settings load THEN every default applies."""
    blank = {
        "STAGE": "",
        "MARKET_DATA_SOURCE": "   ",
        "REDIS_URL": "",
        "JWT_SECRET": " \t ",
        "JWT_ALGORITHM": "",
        "AWS_REGION": "",
        "TIINGO_API_KEY": "",
        "ALPHA_VANTAGE_API_KEY": "  ",
        "YFINANCE_CACHE_DIR": "",
    }

    assert load_settings(environ=blank) == load_settings(environ={})


def test_values_are_stripped_of_surrounding_whitespace() -> None:
    settings = load_settings(environ={**DEPLOYED_IDENTITY, "STAGE": " dev ", "JWT_SECRET": f"  {PRIVATE_SECRET}\n"})

    assert settings.stage is Stage.DEV
    assert settings.effective_jwt_secret == PRIVATE_SECRET


# --- secrets never leak ----------------------------------------------------------------------------------

API_KEYS = {
    "ALPHA_VANTAGE_API_KEY": "av-key-0123456789-SECRET",
    "FINANCIAL_MODELING_PREP_API_KEY": "fmp-key-0123456789-SECRET",
    "TIINGO_API_KEY": "tiingo-key-0123456789-SECRET",
}


def test_api_keys_are_secret_and_absent_from_repr() -> None:
    settings = load_settings(environ={**API_KEYS, **DEPLOYED_IDENTITY, "STAGE": "dev", "JWT_SECRET": PRIVATE_SECRET})

    assert settings.alpha_vantage_api_key is not None
    assert settings.financial_modeling_prep_api_key is not None
    assert settings.tiingo_api_key is not None
    assert settings.alpha_vantage_api_key.get_secret_value() == API_KEYS["ALPHA_VANTAGE_API_KEY"]
    assert settings.financial_modeling_prep_api_key.get_secret_value() == API_KEYS["FINANCIAL_MODELING_PREP_API_KEY"]
    assert settings.tiingo_api_key.get_secret_value() == API_KEYS["TIINGO_API_KEY"]
    rendered = [repr(settings), str(settings), settings.model_dump_json()]
    for text in rendered:
        for value in [*API_KEYS.values(), PRIVATE_SECRET]:
            assert value not in text


@pytest.mark.parametrize(
    "bad",
    [
        {"REDIS_URL": "http://:hunter2-redis-password@cache:6379"},  # a field error
        {"STAGE": "dev"},  # a cross-field (model) error: JWT_SECRET unset in dev
    ],
    ids=["field-error", "model-error"],
)
def test_a_failed_load_never_echoes_secret_values(bad: dict[str, str]) -> None:
    """GIVEN a bad environment that also holds API keys WHEN the load fails THEN no secret is in the message."""
    error = config_error({**API_KEYS, **bad})

    for text in (error.message, str(error)):
        for value in API_KEYS.values():
            assert value not in text
        assert "hunter2" not in text


def test_a_failed_load_traceback_never_shows_an_api_key() -> None:
    """Tracebacks are what `make token` prints and what logger.exception records on a failed cold start.

    pydantic truncates a long input repr in the middle, so a short key (Alpha Vantage keys are 16
    characters) in the last field set is shown whole; longer keys leak their tail.
    """
    alpha_vantage_key = "AVKEY0123SECRET9"
    error = config_error({"STAGE": "dev", "ALPHA_VANTAGE_API_KEY": alpha_vantage_key})

    printed = "".join(traceback.format_exception(error))

    assert alpha_vantage_key not in printed


# --- AWS region ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-1"}, "ap-south-1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),
        ({}, "us-east-1"),
    ],
    ids=["default-region-only", "aws-region-wins", "blank-aws-region", "neither"],
)
def test_aws_default_region_is_used_when_aws_region_is_absent(environ: dict[str, str], region: str) -> None:
    assert load_settings(environ=environ).aws_region == region


def test_a_blank_aws_default_region_counts_as_unset() -> None:
    assert load_settings(environ={"AWS_DEFAULT_REGION": "   "}).aws_region == "us-east-1"


def test_settings_are_immutable() -> None:
    settings = load_settings(environ={})

    with pytest.raises(ValueError, match="frozen"):
        settings.stage = Stage.PROD  # type: ignore[misc]
    assert settings.stage is Stage.LOCAL


def test_in_replay_the_popular_list_defaults_to_symbols_of_the_replay_universe() -> None:
    replay = load_settings({"STAGE": "local", "MARKET_DATA_SOURCE": "replay"})
    live = load_settings({"STAGE": "local"})
    chosen = load_settings({"STAGE": "local", "MARKET_DATA_SOURCE": "replay", "JOB_POPULAR_SYMBOLS": "MSFT,brk.b"})
    assert replay.job_popular_symbols == REPLAY_POPULAR_SYMBOLS
    assert "META" not in replay.job_popular_symbols
    assert "TSLA" not in replay.job_popular_symbols
    assert live.job_popular_symbols == DEFAULT_POPULAR_SYMBOLS
    assert chosen.job_popular_symbols == ("MSFT", "BRK-B")
