"""The matter catalog (事项目录): loaded and validated once from data/matters.toml, served by an activity."""

import tomllib
from pathlib import Path
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError
from temporalio import activity

from contract.common import Code
from contract.matter import Matter

log = structlog.get_logger()

_CODE = TypeAdapter(Code)


class CatalogError(ValueError):
    """The catalog file is invalid; `problems` lists every problem found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_catalog(path: Path) -> dict[str, Matter]:
    """Parse and validate the whole file, reporting every problem at once so one edit fixes them all."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError([f"{path}: cannot read: {e}"]) from e
    except tomllib.TOMLDecodeError as e:
        # The message carries "(at line N, column M)".
        raise CatalogError([f"{path}: {e}"]) from e

    problems = [f"{path}: unknown top-level key {key!r}" for key in data if key != "matter"]
    tables = data.get("matter")
    if not isinstance(tables, list) or not tables:
        raise CatalogError([*problems, f"{path}: no [[matter]] tables"])

    catalog: dict[str, Matter] = {}
    first_seen: dict[str, int] = {}
    for i, raw in enumerate(tables):
        code = _code(raw)
        label = f"matter {code!r}" if code else f"matter[{i}]"
        # Checked before validation, so a duplicate is reported even if either copy is also invalid.
        if code in first_seen:
            problems.append(f"{path}: {label}: duplicate code at matter[{i}], first at matter[{first_seen[code]}]")
        elif code:
            first_seen[code] = i
        try:
            # Strict: TOML has real types, so "true" or 5.0 is an editing mistake, not a value to coerce.
            matter = Matter.model_validate(raw, strict=True)
        except ValidationError as e:
            problems += [_problem(path, label, err["loc"], err["msg"]) for err in e.errors()]
            continue
        catalog[matter.code] = matter

    if problems:
        raise CatalogError(problems)
    return catalog


def _code(raw: Any) -> str | None:
    # A matter is named by its code when the code itself is valid; otherwise only its position can find it.
    try:
        return _CODE.validate_python(raw.get("code"), strict=True)
    except (AttributeError, ValidationError):
        return None


def _problem(path: Path, label: str, loc: tuple[int | str, ...], msg: str) -> str:
    # Errors from a model-level rule (e.g. deferral vs promised limit) have no loc; their message names the fields.
    where = f", field {'.'.join(map(str, loc))}" if loc else ""
    return f"{path}: {label}{where}: {msg}"


class CatalogActivities:
    """Serves matters from a catalog loaded at worker start (the file is read once, not per case)."""

    def __init__(self, catalog: dict[str, Matter]) -> None:
        self._catalog = catalog

    @activity.defn(name="get_matter")
    async def get_matter(self, code: str) -> Matter | None:
        return self.matter(code)

    def matter(self, code: str) -> Matter | None:
        """None for an unknown code: the workflow turns that into a not-accepted notice."""
        matter = self._catalog.get(code)
        if matter is None:
            log.warning("matter_unknown", matter=code)
        else:
            log.info("matter_served", matter=code)
        return matter
