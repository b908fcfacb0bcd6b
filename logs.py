"""structlog JSON logging, configured once at the edge (worker.py, starter.py).

Workflows log through `workflow.logger` (replay-aware, sandbox-safe); those stdlib records are
rendered by the same JSON renderer here. Log codes and ids only, never personal data.
"""

import logging
import re
import sys
import time

import structlog


def configure_logging(level: str = "INFO") -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Temporal's loggers add workflow/activity info as a structured `temporal_*` field already;
    # keep it out of the event name so `event` stays a short, greppable name.
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


class CoreLogs(logging.Filter):
    """The Temporal SDK core's (Rust) warnings as our JSON events: `temporal_core` with its
    `message`, `target` and `error`, and a repeat (five pollers retrying the same call: "retried
    6 times", "7 times"...) at most once per `every` seconds, with the count left out."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self.last: dict[tuple[str, str, str], float] = {}
        self.left_out: dict[tuple[str, str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        core = getattr(record, "temporal_log", None)
        if core is None:
            return True
        fields = dict(core.fields or {})
        key = (core.target, re.sub(r"\d+", "N", core.message), repr(sorted(fields.items())))
        now = time.monotonic()
        if now - self.last.get(key, -self.every) < self.every:
            self.left_out[key] = self.left_out.get(key, 0) + 1
            return False
        if len(self.last) > 1000:  # forget old keys, keep memory flat
            self.last = {k: t for k, t in self.last.items() if now - t < self.every}
        self.last[key] = now
        del record.temporal_log  # rendered below as plain fields instead
        record.msg, record.args = "temporal_core", ()
        record.core_message, record.target = core.message, core.target
        record.repeats_left_out = self.left_out.pop(key, 0)
        for name, value in fields.items():
            # The core's own fields (error, run_id...), never over a LogRecord attribute.
            setattr(record, f"core_{name}" if hasattr(record, name) else name, str(value)[:500])
        return True


def core_runtime(metrics_address: str | None = None):
    """A Temporal runtime whose core logs (warnings and up) go through `logging`, so they come out
    as JSON with ours instead of as the core's own text on stderr. Pass it to Client.connect.

    With `metrics_address` (host:port) it also serves Prometheus metrics there: the SDK's own and
    hallflow's (activities/metrics.py). An address it cannot bind (another worker on this host
    has it) is logged and the worker runs without metrics: cases go on; Prometheus sees the
    target down."""
    from temporalio.runtime import (
        LogForwardingConfig, LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig, TelemetryFilter,
    )

    core = logging.getLogger("temporalio.core")
    core.addFilter(CoreLogs())

    def telemetry(metrics: PrometheusConfig | None) -> TelemetryConfig:
        forwarding = LogForwardingConfig(
            logger=core,
            append_target_to_name=False,
            prepend_target_on_message=False,
            append_log_fields_to_message=False,
        )
        levels = TelemetryFilter(core_level="WARN", other_level="ERROR")
        return TelemetryConfig(logging=LoggingConfig(filter=levels, forwarding=forwarding), metrics=metrics)

    if metrics_address:
        try:
            return Runtime(telemetry=telemetry(PrometheusConfig(bind_address=metrics_address)))
        except ValueError as err:  # the SDK's words: "Failed starting Prometheus exporter: Address already in use"
            structlog.get_logger().warning("metrics_unavailable", address=metrics_address, reason=str(err))
    return Runtime(telemetry=telemetry(None))
