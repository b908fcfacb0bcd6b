"""Where hallflow finds Temporal and how it proves itself there: TLS, mTLS (a client
certificate) or an API key, read from Temporal's own environment configuration, so that one
profile serves the `temporal` CLI and hallflow alike (docs/security.md).

Precedence, field by field:

- address and namespace: HALLFLOW_TEMPORAL_ADDRESS / HALLFLOW_NAMESPACE when set (or passed to
  Settings explicitly); else TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE; else the profile's `address` /
  `namespace`; else hallflow's defaults (127.0.0.1:7233, default). As with the CLI's
  `--address` flag, an explicit HALLFLOW_TEMPORAL_ADDRESS replaces the address only: TLS and the
  API key still come from the profile and the TEMPORAL_* variables.
- TLS, client certificate, API key, gRPC metadata: only from Temporal's configuration. The
  variables (TEMPORAL_TLS, TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME,
  TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_API_KEY,
  TEMPORAL_GRPC_META_*) override the profile, which is TEMPORAL_PROFILE (default "default") in
  TEMPORAL_CONFIG_FILE (default ~/.config/temporalio/temporal.toml; absent is fine, but a
  TEMPORAL_CONFIG_FILE naming no file is refused rather than ignored). An API key turns TLS on
  unless TEMPORAL_TLS=false, as in the SDK.
- The data converter, interceptors and runtime are always hallflow's (settings.connect).

The certificate files are read at each connect, so a renewed one is picked up by the worker's
next attempt and by every starter.py run.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.envconfig import ClientConfigProfile
from temporalio.service import TLSConfig

UNREACHABLE = "cannot reach Temporal at"


class ConnectionConfigError(ValueError):
    """Temporal's connection settings cannot be used as they are (a bad profile, a missing
    certificate file): waiting will not help, unlike an unreachable server."""


class TemporalUnreachable(RuntimeError):
    """The server did not answer, or the TLS handshake with it failed: one line, the address and
    a reason an operator can act on. A RuntimeError, as the SDK's own connection errors are."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{UNREACHABLE} {address}: {reason}")
        self.address, self.reason = address, reason


@dataclass(frozen=True)
class TemporalConnection:
    address: str
    namespace: str
    tls: bool | TLSConfig | None = None  # None: the SDK decides (TLS when there is an API key)
    api_key: str | None = field(default=None, repr=False)
    rpc_metadata: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls) if self.tls is not None else self.api_key is not None

    @property
    def mutual_tls(self) -> bool:
        return isinstance(self.tls, TLSConfig) and self.tls.client_cert is not None

    def connect_args(self) -> dict[str, Any]:
        """Client.connect's keyword arguments for where and how."""
        return {
            "target_host": self.address,
            "namespace": self.namespace,
            "tls": self.tls,
            "api_key": self.api_key,
            "rpc_metadata": self.rpc_metadata,
        }


def temporal_connection(settings, environ: dict[str, str] | None = None) -> TemporalConnection:
    """Where and how to connect for these settings (precedence: the module's docstring).
    `environ`: the variables to read instead of the process's (tests)."""
    config_file = (os.environ if environ is None else environ).get("TEMPORAL_CONFIG_FILE")
    if config_file and not Path(config_file).exists():  # the SDK would go on as if none were named
        raise ConnectionConfigError(f"Temporal connection settings: TEMPORAL_CONFIG_FILE {config_file} does not exist")
    try:
        config = ClientConfigProfile.load(override_env_vars=environ).to_client_connect_config()
    except (RuntimeError, OSError) as err:  # the SDK's ConfigError is a RuntimeError; a missing file
        raise ConnectionConfigError(f"Temporal connection settings: {' '.join(str(err).split())}") from None
    tls = config.get("tls")
    if isinstance(tls, TLSConfig) and (tls.client_cert is None) != (tls.client_private_key is None):
        raise ConnectionConfigError(
            "Temporal connection settings: a client certificate needs its key, and a key its certificate "
            "(TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH)"
        )
    explicit = settings.model_fields_set
    address = settings.temporal_address if "temporal_address" in explicit else config.get("target_host")
    namespace = settings.namespace if "namespace" in explicit else config.get("namespace")
    return TemporalConnection(
        address=address or settings.temporal_address,
        namespace=namespace or settings.namespace,
        tls=tls,
        api_key=config.get("api_key"),
        rpc_metadata=dict(config.get("rpc_metadata") or {}),
    )


async def open_client(settings, **hallflow):
    """Client.connect where `temporal_connection` says, with hallflow's own `data_converter`,
    `interceptors` and `runtime` (never the profile's); TemporalUnreachable when it fails."""
    from temporalio.client import Client

    where = temporal_connection(settings)
    try:
        return await Client.connect(**where.connect_args(), **hallflow)
    except RuntimeError as err:
        raise TemporalUnreachable(where.address, failure_reason(where, str(err))) from err


# What the SDK's connection errors (Rust debug strings) mean, most specific first.
_REASONS = (
    (("unknownissuer", "unknown issuer", "unknownca", "unknown ca"),
     "TLS: the server's certificate is not signed by a trusted CA (TEMPORAL_TLS_SERVER_CA_CERT_PATH)"),
    (("notvalidforname", "not valid for name"),
     "TLS: the server's certificate does not name this host (TEMPORAL_TLS_SERVER_NAME)"),
    (("invalidcertificate(expired", "invalidcertificate(notvalidyet", "certificateexpired"),
     "TLS: a certificate has expired or is not yet valid"),
    (("certificaterequired", "certificate required", "badcertificate", "bad certificate", "handshakefailure"),
     "TLS: the server refused the client certificate, or wants one (TEMPORAL_TLS_CLIENT_CERT_PATH)"),
    (("invalidcontenttype", "corrupt message"), "TLS: the server does not speak TLS there (TEMPORAL_TLS)"),
    (("connectionrefused", "connection refused"), "connection refused"),
    (("timed out", "timeout", "deadline"), "timed out"),
    (("dns", "resolve", "name or service not known", "failed to lookup"), "host not found"),
    (("connection reset", "connectionreset", "broken pipe", "brokenpipe", "unavailable", "unexpectedeof",
      "close_notify", "connection was not ready"), "connection lost"),
    (("tls", "certificate", "handshake"), "TLS handshake failed"),
    (("connect error",), "cannot connect"),
)


def unreachable_reason(error: str) -> str:
    """A few words for an operator from the SDK's connection error (a Rust debug string), or
    the reason a TemporalUnreachable already gives."""
    if error.startswith(UNREACHABLE) and ": " in error:
        return error.split(": ", 1)[1]
    said = error.lower()
    for needles, reason in _REASONS:
        if any(needle in said for needle in needles):
            return reason
    return " ".join(error.split())[:200]


def failure_reason(where: TemporalConnection, error: str) -> str:
    """unreachable_reason, with what the configuration suggests when the server hung up on the
    first call: a TLS server hangs up on a plaintext client, and an mTLS one (TLS 1.3) on a client
    without an accepted certificate only after the handshake, which the client sees as a reset,
    a broken pipe or a missing close_notify, whichever comes first."""
    said = error.lower()
    if "after connection" not in said or not any(needle in said for needle in _HUNG_UP):
        return unreachable_reason(error)
    if not where.uses_tls:
        return "the server hung up at once; does it want TLS? (TEMPORAL_TLS, TEMPORAL_TLS_SERVER_CA_CERT_PATH)"
    if not where.mutual_tls:
        return (
            "the server hung up after the TLS handshake; does it want a client certificate? "
            "(TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH)"
        )
    return (
        "the server hung up after the TLS handshake; does it accept this client certificate? "
        "(TEMPORAL_TLS_CLIENT_CERT_PATH)"
    )


_HUNG_UP = ("brokenpipe", "connectionreset", "unexpectedeof", "connection was not ready", "canceled")
