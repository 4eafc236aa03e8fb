"""The procedure catalogue loads from data and refuses bad files with file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from motcua_dossier.domain.catalogue import (
    Catalogue,
    UnknownAgency,
    UnknownProcedure,
    UnknownWorkflow,
)
from motcua_dossier.domain.reference_data import DATA_DIR, ReferenceDataError

SHIPPED_PROCEDURES = (DATA_DIR / "procedures.yaml").read_text(encoding="utf-8")
SHIPPED_AGENCIES = (DATA_DIR / "agencies.yaml").read_text(encoding="utf-8")
SHIPPED = Catalogue.load()
# Position of each procedure / agency in its file, as error fields name them.
P = {p.code: i for i, p in enumerate(SHIPPED.procedures())}
A = {a.code: i for i, a in enumerate(SHIPPED.agencies())}


def data_dir(tmp_path: Path, **files: str) -> Path:
    """A copy of the shipped data with some files replaced by ``files`` (name -> text)."""
    for source in DATA_DIR.glob("*.yaml"):
        shutil.copy(source, tmp_path / source.name)
    for stem, text in files.items():
        (tmp_path / f"{stem}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def refused(directory: Path) -> ReferenceDataError:
    with pytest.raises(ReferenceDataError) as caught:
        Catalogue.load(directory)
    return caught.value


def assert_located(error: ReferenceDataError, file: str, line: int, field: str) -> None:
    assert error.file.name == file
    assert error.line == line
    assert error.field == field
    assert f"{file}:{line}: {field}: " in str(error)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return SHIPPED


# -- the shipped data ------------------------------------------------------------------------


def test_shipped_catalogue_loads_with_enough_agencies_and_procedures(catalogue):
    assert len(catalogue.agencies()) >= 3
    assert len(catalogue.procedures()) >= 12
    assert len({p.agency_code for p in catalogue.procedures()}) >= 3
    assert len(catalogue.workflows()) >= 2


def test_agency_codes_fit_in_a_dossier_code(catalogue):
    for agency in catalogue.agencies():
        assert agency.code.isascii() and agency.code.isupper()
        assert "-" not in agency.code


def test_province_is_data_not_code(catalogue):
    assert {a.province for a in catalogue.agencies()} == {"Thành phố Đà Nẵng"}


def test_procedure_lookup_returns_fee_days_and_documents(catalogue):
    birth = catalogue.procedure("HT-001")
    assert birth.name == "Đăng ký khai sinh"
    assert birth.fee_vnd is None and not birth.requires_payment
    assert birth.processing_days == 0
    assert any(d.mandatory for d in birth.required_documents)
    assert any(not d.mandatory for d in birth.required_documents)

    record = catalogue.procedure("LLTP-001")
    assert (record.fee_vnd, record.processing_days, record.agency_code) == (200000, 10, "CATP")
    assert catalogue.procedure("HT-004").fee_vnd == 8000
    assert catalogue.procedure("XD-001").fee_vnd == 75000
    assert catalogue.procedure("KD-001").fee_vnd == 100000


def test_fees_are_integers_and_fee_bearing_procedures_have_a_payment_step(catalogue):
    for procedure in catalogue.procedures():
        assert procedure.fee_vnd is None or type(procedure.fee_vnd) is int
        states = {s.code for s in catalogue.workflow(procedure.workflow_id).states}
        assert (6 in states) == procedure.requires_payment, procedure.code


def test_procedures_filter_by_agency(catalogue):
    business = catalogue.procedures(agency_code="STC")
    assert business and all(p.agency_code == "STC" for p in business)
    assert catalogue.agency("STC").name == "Sở Tài chính thành phố Đà Nẵng"


def test_unknown_codes_raise_key_errors_naming_the_code(catalogue):
    with pytest.raises(UnknownProcedure, match="NOPE") as caught:
        catalogue.procedure("NOPE")
    assert isinstance(caught.value, KeyError)
    with pytest.raises(UnknownAgency):
        catalogue.agency("NOPE")
    with pytest.raises(UnknownAgency):
        catalogue.procedures(agency_code="NOPE")
    with pytest.raises(UnknownWorkflow):
        catalogue.workflow("nope")


def test_vietnamese_names_are_nfc(tmp_path):
    decomposed = "Đăng ky\u0301 khai sinh"  # "ký" with a combining acute accent
    text = SHIPPED_PROCEDURES.replace("name: Đăng ký khai sinh", f"name: {decomposed}")
    loaded = Catalogue.load(data_dir(tmp_path, procedures=text))
    assert loaded.procedure("HT-001").name == "Đăng ký khai sinh"


# -- bad files are refused with file, line and field ---------------------------------------


def test_float_fee_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("fee_vnd: 75000", "fee_vnd: 75000.0")
    error = refused(data_dir(tmp_path, procedures=text))
    assert_located(
        error, "procedures.yaml", line_of(text, "75000.0"), f"procedures[{P['XD-001']}].fee_vnd"
    )
    assert "integer" in error.reason


def test_negative_fee_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("fee_vnd: 8000", "fee_vnd: -8000")
    error = refused(data_dir(tmp_path, procedures=text))
    assert_located(
        error, "procedures.yaml", line_of(text, "-8000"), f"procedures[{P['HT-004']}].fee_vnd"
    )


def test_unknown_agency_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("agency: STP", "agency: SKHDT")
    error = refused(data_dir(tmp_path, procedures=text))
    assert_located(
        error, "procedures.yaml", line_of(text, "SKHDT"), f"procedures[{P['HT-004']}].agency"
    )
    assert "SKHDT" in str(error)


def test_unknown_workflow_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("workflow: standard", "workflow: express", 1)
    error = refused(data_dir(tmp_path, procedures=text))
    assert_located(
        error, "procedures.yaml", line_of(text, "express"), f"procedures[{P['HT-001']}].workflow"
    )


def test_duplicate_procedure_code_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("code: HT-002", "code: HT-001")
    error = refused(data_dir(tmp_path, procedures=text))
    expected_line = line_of(text, "code: HT-001", occurrence=2)
    assert_located(error, "procedures.yaml", expected_line, f"procedures[{P['HT-002']}].code")
    assert f"first on line {line_of(text, 'code: HT-001')}" in str(error)


def test_missing_field_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("    processing_days: 15\n", "")
    error = refused(data_dir(tmp_path, procedures=text))
    # Reported at the start of the procedure that lacks it.
    expected_line = line_of(text, "code: XD-001")
    assert_located(
        error, "procedures.yaml", expected_line, f"procedures[{P['XD-001']}].processing_days"
    )
    assert "missing" in error.reason


def test_misspelt_field_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace(
        "{name: Tờ khai đăng ký khai sinh, mandatory: true}",
        "{name: Tờ khai đăng ký khai sinh, mandatary: true}",
    )
    error = refused(data_dir(tmp_path, procedures=text))
    field = f"procedures[{P['HT-001']}].required_documents[0].mandatary"
    assert_located(error, "procedures.yaml", line_of(text, "mandatary"), field)


def test_negative_processing_days_are_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("processing_days: 10", "processing_days: -1")
    error = refused(data_dir(tmp_path, procedures=text))
    field = f"procedures[{P['LLTP-001']}].processing_days"
    assert_located(error, "procedures.yaml", line_of(text, "processing_days: -1"), field)


def test_fee_on_a_workflow_without_payment_step_is_refused(tmp_path):
    old = (
        "fee_vnd: 200000\n    processing_days: 10\n"
        "    online_level: full\n    workflow: with_payment\n"
    )
    assert SHIPPED_PROCEDURES.count(old) == 1
    text = SHIPPED_PROCEDURES.replace(old, old.replace("with_payment", "standard # no fee step"))
    error = refused(data_dir(tmp_path, procedures=text))
    field = f"procedures[{P['LLTP-001']}].workflow"
    assert_located(error, "procedures.yaml", line_of(text, "# no fee step"), field)
    assert "payment" in error.reason


def test_free_procedure_on_a_payment_workflow_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("workflow: standard", "workflow: with_payment # free", 1)
    error = refused(data_dir(tmp_path, procedures=text))
    field = f"procedures[{P['HT-001']}].workflow"
    assert_located(error, "procedures.yaml", line_of(text, "with_payment # free"), field)
    assert "no fee" in error.reason


def test_unquoted_numeric_code_gets_a_quoting_hint(tmp_path):
    text = SHIPPED_PROCEDURES.replace("code: HT-001", "code: 1.001193")
    error = refused(data_dir(tmp_path, procedures=text))
    assert_located(
        error, "procedures.yaml", line_of(text, "1.001193"), f"procedures[{P['HT-001']}].code"
    )
    assert "quotes" in error.reason


def test_bad_online_level_is_refused(tmp_path):
    text = SHIPPED_PROCEDURES.replace("online_level: full", "online_level: toàn trình", 1)
    error = refused(data_dir(tmp_path, procedures=text))
    field = f"procedures[{P['HT-001']}].online_level"
    assert_located(error, "procedures.yaml", line_of(text, "toàn trình", 2), field)


def test_duplicate_agency_code_is_refused(tmp_path):
    text = SHIPPED_AGENCIES.replace("code: SXD", "code: STP")
    error = refused(data_dir(tmp_path, agencies=text))
    field = f"agencies[{A['SXD']}].code"
    assert_located(error, "agencies.yaml", line_of(text, "code: STP", 2), field)


def test_hyphenated_agency_code_is_refused(tmp_path):
    text = SHIPPED_AGENCIES.replace("code: PHOIAN", "code: UBND-HA")
    error = refused(data_dir(tmp_path, agencies=text))
    assert_located(
        error, "agencies.yaml", line_of(text, "UBND-HA"), f"agencies[{A['PHOIAN']}].code"
    )


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = "agencies:\n  - code: STP\n    name: [unclosed\n"
    error = refused(data_dir(tmp_path, agencies=text))
    assert error.file.name == "agencies.yaml"
    assert error.field == "<syntax>"
    assert error.line is not None and error.line >= 3


def test_missing_file_is_refused(tmp_path):
    directory = data_dir(tmp_path)
    (directory / "agencies.yaml").unlink()
    error = refused(directory)
    assert error.file.name == "agencies.yaml"
    assert "not found" in str(error)
