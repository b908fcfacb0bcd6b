"""The integration contract: committed JSON Schemas match the models."""

import json

from contract import schemas
from settings import ROOT


def test_committed_json_schemas_match_the_models():
    folder = ROOT / "docs" / "schemas"
    generated = schemas.all_schemas()
    committed = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}
    stale = sorted(name for name in generated if committed.get(name) != generated[name])
    extra = sorted(set(committed) - set(generated))
    assert not stale and not extra, f"run `make schema` and commit docs/schemas (stale: {stale}, extra: {extra})"
