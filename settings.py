"""All settings, from environment variables prefixed HALLFLOW_ (see README, "Settings")."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALLFLOW_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "hallflow"
    ui_url: str = "http://127.0.0.1:8233"
    # SQLite file by default; PostgreSQL in production, e.g.
    # postgresql+psycopg://hallflow@db.example:5432/hallflow
    database_url: str = f"sqlite:///{ROOT / 'var' / 'hallflow.db'}"
    catalog_file: Path = ROOT / "data" / "matters.toml"
    calendar_dir: Path = ROOT / "data" / "calendar"
    risk_file: Path = ROOT / "data" / "risk.toml"
    # The organisation directory and the public keys that speak for its people (docs/security.md).
    org_file: Path = ROOT / "data" / "org.toml"
    keys_file: Path = ROOT / "var" / "keys" / "public.toml"
    # Private keys, never in the repository: starter.py's (a calling system's) and the worker's own
    # (what one workflow sends another). `make run` writes development ones.
    signing_key: Path = ROOT / "var" / "keys" / "hallflow-cli.key"
    worker_key: Path = ROOT / "var" / "keys" / "hallflow.key"
    # Data keys (security/data_keys.py): every payload in Temporal and the applicants' personal
    # data at rest are encrypted with them. A file (`make keys` writes a development one), or the
    # same TOML in HALLFLOW_DATA_KEYS from a secret store. Never in the repository.
    data_keys_file: Path = ROOT / "var" / "keys" / "data.toml"
    data_keys: SecretStr | None = None
    # AES-256-GCM, or SM4-GCM (GB/T 32907) where 国密 is required; the current key must be one.
    cipher: Literal["aes-256-gcm", "sm4-gcm"] = "aes-256-gcm"
    # The codec server (security/codec_server.py): decodes payloads for the Web UI and the CLI.
    # Loopback by default; every request carries the bearer token (a file `make keys` writes,
    # or HALLFLOW_CODEC_TOKEN); browsers are let in only from these origins (comma-separated;
    # default: HALLFLOW_UI_URL).
    codec_host: str = "127.0.0.1"
    codec_port: int = Field(default=8234, ge=0, le=65535)
    codec_token: SecretStr | None = None
    codec_token_file: Path = ROOT / "var" / "keys" / "codec-token"
    codec_origins: str | None = None
    # Who starter.py acts for when a message names nobody (a rating, a suggestion).
    actor: str = "applicant"
    log_level: str = "INFO"
    # The audit chain's hash (activities/chain.py): SHA-256, or SM3 (GM/T 0004) where 国密
    # algorithms are required. Each row names its own, so switching keeps old rows verifiable.
    audit_hash: Literal["sha256", "sm3"] = "sha256"
    # Feedback (step 3): how long after its end a case may be rated, and how long a department
    # has to rectify or explain a bad review (domain.md: 5 to 15 working days by locality).
    rating_window_days: int = Field(default=5, ge=1)
    rectify_days: int = Field(default=5, ge=5, le=15)
    # Worker versioning (deploy/README.md): with a build id, this worker serves only that version
    # of the deployment, and a workflow stays on the version it started on (pinned).
    build_id: str | None = None
    deployment_name: str = "hallflow"
    # Worker tuning: bounded cache keeps memory flat however many cases are open: about 270 KB per
    # cached case, so 300 keeps the worker under 250 MB (docs/performance.md). An evicted case
    # replays its history (tens of events) when it next wakes.
    max_cached_workflows: int = Field(default=300, ge=0)
    activity_threads: int = Field(default=16, ge=1)
    # The worker's Prometheus endpoint (http://host:port/metrics): the SDK's metrics and
    # hallflow's (activities/metrics.py). Loopback by default; 0.0.0.0 where Prometheus scrapes
    # from elsewhere (a pod). Port 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9464, ge=0, le=65535)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _default_actor(fallback: str):
    """Whom a message naming nobody is signed for: a risk report is its owner's, unless the
    caller says who reports it; anything else (a rating, a suggestion) the applicant's."""

    def actor(value) -> str:
        from contract.risk import RiskReport

        if isinstance(value, RiskReport) and not value.owner.startswith(("head:", "office:")):
            return value.owner
        return fallback

    return actor


def encrypted_converter(settings: Settings | None = None):
    """hallflow's JSON contract, every payload encrypted with the deployment's data keys."""
    from contract.converter import data_converter
    from security.codec import encrypted
    from security.data_keys import load

    settings = settings or get_settings()
    return encrypted(data_converter, load(settings))


async def connect(settings: Settings | None = None, runtime=None, key_file: Path | None = None, actor: str | None = None):
    """A Temporal client speaking hallflow's JSON contract (pydantic models as JSON payloads),
    signing what it sends with `key_file` (default: settings.signing_key) when that file exists.
    Where and how (TLS, mTLS, API key): security/connection.py, which also reads Temporal's own
    TEMPORAL_* variables and profile; security.connection.TemporalUnreachable when it fails.

    `runtime`: the worker's, which forwards the SDK core's logs (logs.core_runtime)."""
    from temporalio.common import HeaderCodecBehavior

    from security.connection import open_client

    settings = settings or get_settings()
    key_file = key_file or settings.signing_key
    interceptors = []
    if key_file.exists():
        from security.keys import load_private
        from security.sender import Signer

        interceptors.append(Signer(load_private(key_file), actor or _default_actor(settings.actor)))
    return await open_client(
        settings,
        data_converter=encrypted_converter(settings),
        runtime=runtime,
        interceptors=interceptors,
        # The worker reads each message's hallflow-actor header through the codec: the temporal
        # CLI with --codec-endpoint encrypts --headers values; a plain header passes as it is.
        header_codec_behavior=HeaderCodecBehavior.WORKFLOW_ONLY_CODEC,
    )
