"""Types every part of hallflow shares."""

from datetime import datetime, timedelta, timezone
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, StringConstraints

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact
# and needs no tz database (which the workflow sandbox could not read anyway).
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

TASK_QUEUE = "hallflow"

# A non-empty, trimmed name or identifier (officer, department, hall...).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
# Codes are opaque ASCII identifiers: matters, materials, departments.
Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


# Timezone-aware instants are normalised to UTC: a naive datetime is refused (Temporal
# search attributes reject them, and a naive time is ambiguous between halls).
Instant = Annotated[AwareDatetime, AfterValidator(_utc)]


class RefusedSignal(BaseModel):
    """A signal twin (`<update>_signal`) the workflow refused: recorded, never applied."""

    signal: str
    reason: str
    error: str  # the error type an Update would have returned: WrongStage, InvalidPayload, UnknownSignal…
    at: Instant


SIGNAL_TWIN_SUFFIX = "_signal"
