from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.catalog import CatalogActivities, CatalogError, load_catalog
from settings import ROOT

SHIPPED = ROOT / "data" / "matters.toml"

# A valid matter; tests append lines or change values to break one thing at a time.
MATTER = """
[[matter]]
code = "{code}"
name = "企业开办"
lead_department = "market-regulation"
statutory_days = 5
promised_days = {promised}
deferral_days = {deferral}
reviewers = ["officer-li"]

[[matter.materials]]
code = "business-licence-application"
name = "营业执照申请书"

[[matter.materials]]
code = "residence-proof"
name = "住所使用证明"
core = {core}
"""


def matter(code: str = "enterprise-opening", promised: int = 1, deferral: int = 1, core: str = "false") -> str:
    return MATTER.format(code=code, promised=promised, deferral=deferral, core=core)


def load_error(tmp_path: Path, text: str) -> CatalogError:
    path = tmp_path / "matters.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    return caught.value


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(SHIPPED)


def test_shipped_catalog_has_the_seed_matters_with_their_promised_limits(catalog):
    seed = {
        "enterprise-opening": 1,
        "real-estate-registration": 5,
        "social-insurance-transfer": 10,
        "construction-permit": 40,
        "medical-device-license": 7,
        "housing-fund-withdrawal": 1,
    }
    assert {code: catalog[code].promised_days for code in seed} == seed
    assert catalog["housing-fund-withdrawal"].automatic


def test_every_matter_decided_by_a_person_has_reviewers(catalog):
    assert all(m.reviewers for m in catalog.values() if not m.automatic)


def test_construction_permit_consults_several_departments_in_parallel(catalog):
    consult = catalog["construction-permit"].consult
    assert len(consult) >= 4
    assert len({c.deadline_days for c in consult}) > 1
    assert any(c.silence_is_consent for c in consult)


def test_shipped_catalog_lets_core_and_non_core_materials_be_told_apart(catalog):
    opening = catalog["enterprise-opening"]
    assert "business-licence-application" in opening.core_codes
    assert "residence-proof" in opening.material_codes - opening.core_codes


def test_deferral_beyond_promised_limit_names_file_matter_and_field(tmp_path):
    error = load_error(tmp_path, matter(promised=1, deferral=3))
    assert str(tmp_path / "matters.toml") in str(error)
    assert "matter 'enterprise-opening'" in str(error)
    assert "deferral_days (3) may not exceed promised_days (1)" in str(error)


def test_wrong_type_names_the_field_path(tmp_path):
    error = load_error(tmp_path, matter(core='"yes"'))
    assert error.problems == [
        f"{tmp_path / 'matters.toml'}: matter 'enterprise-opening', field materials.1.core: "
        "Input should be a valid boolean"
    ]


def test_matter_without_a_valid_code_is_named_by_its_position(tmp_path):
    text = matter() + matter(code="Bad Code").replace('core = false', 'core = "no"')
    error = load_error(tmp_path, text)
    assert all("matter[1]" in p for p in error.problems)
    assert any("field code:" in p for p in error.problems)
    assert any("field materials.1.core:" in p for p in error.problems)


def test_duplicate_matter_codes_are_refused(tmp_path):
    error = load_error(tmp_path, matter() + matter())
    assert error.problems == [
        f"{tmp_path / 'matters.toml'}: matter 'enterprise-opening': duplicate code at matter[1], first at matter[0]"
    ]


def test_toml_syntax_error_names_file_and_line(tmp_path):
    error = load_error(tmp_path, matter() + "\n[[matter]\n")
    assert str(error).startswith(str(tmp_path / "matters.toml"))
    assert f"line {matter().count(chr(10)) + 2}" in str(error)


def test_every_error_in_the_file_is_reported_at_once(tmp_path):
    text = matter(code="enterprise-opening", deferral=3) + matter(code="real-estate-registration", core="1")
    error = load_error(tmp_path, text)
    assert len(error.problems) == 2
    assert "matter 'enterprise-opening'" in error.problems[0]
    assert "matter 'real-estate-registration', field materials.1.core" in error.problems[1]


def test_unknown_field_is_refused(tmp_path):
    error = load_error(tmp_path, matter().replace("reviewers =", "promise_days = 3\nreviewers ="))
    assert "matter 'enterprise-opening', field promise_days: Extra inputs are not permitted" in str(error)


async def test_get_matter_serves_a_matter_from_the_catalog(catalog):
    acts = CatalogActivities(catalog)
    served = await ActivityEnvironment().run(acts.get_matter, "enterprise-opening")
    assert served == catalog["enterprise-opening"]


async def test_get_matter_returns_none_for_an_unknown_code(catalog):
    acts = CatalogActivities(catalog)
    assert await ActivityEnvironment().run(acts.get_matter, "no-such-matter") is None
