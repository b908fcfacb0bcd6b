"""The organisation directory: data/org.toml and the public keys file, loaded and validated once at
worker start (like the catalog), served to workflows by a local activity."""

import json
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from temporalio import activity

from activities.catalog import CatalogError, _problem
from contract.matter import Matter
from contract.org import Directory, Role
from contract.risk import RiskPolicy
from security.keys import KeyFileError, load_public_keys

log = structlog.get_logger()


class DirectoryError(CatalogError):
    """The directory or keys file is invalid; `problems` lists every problem, one line each."""


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise DirectoryError([f"{path}: cannot read: {e}"]) from e
    except tomllib.TOMLDecodeError as e:
        raise DirectoryError([f"{path}: {e}"]) from e


def _label(data: dict[str, Any], loc: tuple[int | str, ...]) -> tuple[str, tuple[int | str, ...]]:
    """`officers[3]` → `officer 'clerk-01'` where the entry has an id, and the rest of the path."""
    if len(loc) >= 2 and isinstance(loc[1], int):
        entries = data.get(str(loc[0]), [])
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else {}
        name = entry.get("id") or entry.get("code") if isinstance(entry, dict) else None
        kind = str(loc[0]).removesuffix("s")
        return (f"{kind} {name!r}" if isinstance(name, str) else f"{loc[0]}[{loc[1]}]"), loc[2:]
    return "directory", loc


def load_directory(
    org_file: Path, keys_file: Path | None, catalog: dict[str, Matter] | None = None, risk_file: Path | None = None
) -> Directory:
    """Parse and validate both files and check the catalog (and, given `risk_file`, the escalation
    ranks data/risk.toml names) against them, every problem at once."""
    data = _read(org_file)
    keys: list[Any] = []
    if keys_file is not None and keys_file.exists():
        try:
            keys = [k.model_dump(mode="json") for k in load_public_keys(keys_file)]
        except KeyFileError as e:
            raise DirectoryError(str(e).split("; ")) from None
    problems: list[str] = []
    try:
        # As JSON, strictly: TOML has real types, so "true" for true is an editing mistake, not a
        # value to coerce; JSON mode still reads a role's name as its enum and a TOML date as a date.
        directory = Directory.model_validate_json(json.dumps({**data, "keys": keys}, default=str), strict=True)
    except ValidationError as e:
        for err in e.errors():
            label, rest = _label(data, err["loc"])
            problems.append(_problem(org_file, label, rest, err["msg"]))
        raise DirectoryError(problems) from None
    problems += _cross_checks(org_file, keys_file, directory, catalog or {})
    if risk_file is not None:
        problems += _rank_checks(org_file, risk_file, directory)
    if problems:
        raise DirectoryError(problems)
    return directory


def _cross_checks(org_file: Path, keys_file: Path | None, d: Directory, catalog: dict[str, Matter]) -> list[str]:
    problems: list[str] = []
    for kind, codes in (("department", [u.code for u in d.departments]), ("hall", [u.code for u in d.halls]),
                        ("officer", [o.id for o in d.officers]), ("system", [s.id for s in d.systems]),
                        ("key", [k.id for k in d.keys])):
        seen: set[str] = set()
        for code in codes:
            if code in seen:
                problems.append(f"{keys_file if kind == 'key' else org_file}: {kind} {code!r}: duplicate")
            seen.add(code)
    for o in d.officers:
        if o.department is not None and not d.is_department(o.department):
            problems.append(f"{org_file}: officer {o.id!r}, field department: no department {o.department!r}")
        if o.hall is not None and not d.is_hall(o.hall):
            problems.append(f"{org_file}: officer {o.id!r}, field hall: no hall {o.hall!r}")
    for k in d.keys:
        if d.system(k.principal) is None and d.officer(k.principal) is None:
            problems.append(f"{keys_file}: key {k.id!r}, field principal: no system or officer {k.principal!r} in {org_file}")
    # The catalog names reviewers and panels: each must be an officer holding that role.
    for m in catalog.values():
        needs = [(r, Role.REVIEWER, "reviewers") for r in m.reviewers]
        if m.panel is not None:
            needs += [(p, Role.PANEL_MEMBER, "panel.members") for p in m.panel.members]
            needs.append((m.panel.chair, Role.PANEL_CHAIR, "panel.chair"))
        for who, role, field in needs:
            officer = d.officer(who)
            if officer is None:
                problems.append(f"{org_file}: matter {m.code!r}, field {field}: {who!r} is not in the directory")
            elif role not in officer.roles:
                problems.append(f"{org_file}: matter {m.code!r}, field {field}: {who!r} lacks the role {role.value}")
        for dept in [m.lead_department, *[c.department for c in m.consult]]:
            if not d.is_department(dept):
                problems.append(f"{org_file}: matter {m.code!r}: department {dept!r} is not in the directory")
    return problems


def _rank_checks(org_file: Path, risk_file: Path, d: Directory) -> list[str]:
    """Each rank of each department's escalation chain must be held by someone in post today, or
    a missed risk step would tell nobody: `head:<department>` by a department_head of it,
    `office:<rank>` by an officer whose `ranks` list it. A [chains] entry must name a department."""
    from activities.risk import load_risk_policy  # the risk activities import the database

    try:
        policy: RiskPolicy = load_risk_policy(risk_file)
    except ValueError as err:
        return [str(err)]
    now = datetime.now(timezone.utc)
    problems = [f"{risk_file}: chains.{dept}: department {dept!r} is not in {org_file}"
                for dept in policy.chains if not d.is_department(dept)]
    for dept in d.departments:
        where = f"chains.{dept.code}" if dept.code in policy.chains else "chain"
        templates = policy.chains.get(dept.code, policy.chain)
        for i, (template, rank) in enumerate(zip(templates, policy.escalation_chain(dept.code))):
            if d.holders(rank, now):
                continue
            named = f"{template!r}" + (f" ({rank!r} for department {dept.code!r})" if template != rank else "")
            if rank.startswith("head:"):
                held = f"no officer of {rank.removeprefix('head:')!r} in post has the role {Role.HEAD.value}"
            else:
                held = "no officer in post lists it in the field ranks (nor has it as id)"
            problems.append(f"{risk_file}: {where}[{i}] {named}: {held} in {org_file}")
    return list(dict.fromkeys(problems))


def warn_wide_systems(d: Directory, at: datetime | None = None) -> list[str]:
    """Log a warning for each calling system that may speak for anyone (`speaks_for = ["*"]`) and
    holds a key not retired, where assertions are required: the development setup's hallflow-cli
    is one; in production each system's scope is its hall or department (docs/security.md). The
    ids warned about."""
    at = at or datetime.now(timezone.utc)
    if not d.require_assertions:
        return []
    wide = []
    for system in d.systems:
        keys = [k.id for k in d.keys if k.principal == system.id and (k.not_after is None or k.not_after > at)]
        if "*" in system.speaks_for and keys:
            wide.append(system.id)
            log.warning("system_speaks_for_anyone", system=system.id, keys=keys,
                        advice="a development setting: in production narrow speaks_for to a hall or department")
    return wide


class DirectoryActivities:
    """Serves the directory loaded at worker start: a workflow records it in its history."""

    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    @activity.defn(name="org_directory")
    async def org_directory(self) -> Directory:
        log.info("directory_served", version=self._directory.version)
        return self._directory
