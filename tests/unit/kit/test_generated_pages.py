"""Drawn pages: written when asked, and in CI a stale or missing copy fails naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from motcua_kit.generated import write_or_check


def test_a_page_is_written_then_checks_clean(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "states.md"
    assert write_or_check(page, "# States\n", check=False, redraw="make states") == 0
    assert page.read_text(encoding="utf-8") == "# States\n"
    assert write_or_check(page, "# States\n", check=True, redraw="make states") == 0


@pytest.mark.parametrize("committed", [None, "# Old states\n"])
def test_a_missing_or_stale_page_fails_the_check_and_is_left_alone(
    tmp_path: Path, committed: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "states.md"
    if committed is not None:
        page.write_text(committed, encoding="utf-8")
    assert write_or_check(page, "# States\n", check=True, redraw="make states") == 1
    assert f"{page} is out of date: run make states" in capsys.readouterr().err
    assert (page.read_text(encoding="utf-8") if page.exists() else None) == committed
