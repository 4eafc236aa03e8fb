"""Workflows: legal and illegal transitions, roles, validation on load, the drawn diagram."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from motcua_dossier import events
from motcua_dossier.domain.catalogue import Catalogue
from motcua_dossier.domain.reference_data import DATA_DIR, ReferenceDataError
from motcua_dossier.domain.workflow import (
    ActionNotAllowed,
    UnknownAction,
    Workflow,
    render_workflow_mermaid,
)
from motcua_dossier.tools import draw_workflows
from motcua_kit.transitions import IllegalTransition

REPO_ROOT = Path(__file__).resolve().parents[3]

# A small workflow to edit in tests: 1 -> 4 -> 9 -> 10, with 5 and 7 on the side.
SMALL = """\
workflows:
  - id: small
    name: Quy trình rút gọn
    initial: 1
    states:
      - {code: 1, name: Mới, sla_days: 1, terminal: false}
      - {code: 4, name: Đang xử lý, sla_days: null, terminal: false}
      - {code: 5, name: Yêu cầu bổ sung, sla_days: null, terminal: false}
      - {code: 7, name: Công dân yêu cầu rút hồ sơ, sla_days: null, terminal: true}
      - {code: 9, name: Đã xử lý xong, sla_days: 1, terminal: false}
      - {code: 10, name: Đã trả kết quả, sla_days: null, terminal: true}
    actions:
      - {name: process, from: [1], to: 4, roles: [officer]}
      - {name: request_supplement, from: [4], to: 5, roles: [officer]}
      - {name: supplement, from: [5], to: 4, roles: [citizen]}
      - {name: withdraw, from: [1, 5], to: 7, roles: [citizen]}
      - {name: approve, from: [4], to: 9, roles: [officer]}
      - {name: return_result, from: [9], to: 10, roles: [officer]}
"""


def data_dir(tmp_path: Path, workflows: str) -> Path:
    """Shipped agencies, no procedures, and the given workflows file."""
    shutil.copy(DATA_DIR / "agencies.yaml", tmp_path / "agencies.yaml")
    (tmp_path / "procedures.yaml").write_text("procedures: []\n", encoding="utf-8")
    (tmp_path / "workflows.yaml").write_text(workflows, encoding="utf-8")
    return tmp_path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def refused(tmp_path: Path, text: str, needle: str, field: str) -> ReferenceDataError:
    """Load ``text`` and assert it is refused at the line holding ``needle``, for ``field``."""
    with pytest.raises(ReferenceDataError) as caught:
        Catalogue.load(data_dir(tmp_path, text))
    error = caught.value
    assert (error.file.name, error.line, error.field) == (
        "workflows.yaml",
        line_of(text, needle),
        field,
    )
    assert f"workflows.yaml:{error.line}: {field}: " in str(error)
    return error


def edited(old: str, new: str) -> str:
    assert SMALL.count(old) == 1, old
    return SMALL.replace(old, new)


@pytest.fixture(scope="module")
def standard() -> Workflow:
    return Catalogue.load().workflow("standard")


@pytest.fixture(scope="module")
def with_payment() -> Workflow:
    return Catalogue.load().workflow("with_payment")


# -- transitions -----------------------------------------------------------------------------


def test_standard_workflow_walks_from_new_to_result_returned(standard):
    state = standard.initial
    assert state == 1
    for action, role in [
        ("receive", "officer"),
        ("process", "officer"),
        ("request_supplement", "officer"),
        ("supplement", "citizen"),
        ("approve", "officer"),
        ("return_result", "officer"),
    ]:
        state = standard.next_state(state, action, role)
    assert state == 10
    assert standard.state(10).terminal


def test_fee_bearing_dossier_waits_for_the_payment_service(with_payment):
    assert with_payment.next_state(2, "request_payment", "officer") == 6
    assert with_payment.next_state(6, "pay", "service") == 4
    with pytest.raises(ActionNotAllowed):
        with_payment.next_state(6, "pay", "officer")
    # No officer shortcut past the fee.
    with pytest.raises(IllegalTransition):
        with_payment.next_state(2, "process", "officer")


@pytest.mark.parametrize(
    ("state", "action", "role", "target"),
    [
        (1, "reject", "officer", 3),
        (1, "withdraw", "citizen", 7),
        (2, "withdraw", "citizen", 7),
        (5, "withdraw", "citizen", 7),
        (4, "stop", "officer", 8),
        (5, "stop", "admin", 8),
    ],
)
def test_side_exits_reach_their_terminal_states(standard, state, action, role, target):
    assert standard.next_state(state, action, role) == target
    assert standard.state(target).terminal


def test_action_from_the_wrong_state_is_an_illegal_transition_naming_state_and_action(standard):
    with pytest.raises(IllegalTransition) as caught:
        standard.next_state(2, "approve", "officer")
    assert (caught.value.state, caught.value.trigger) == (2, "approve")
    assert "'approve'" in str(caught.value) and "state 2" in str(caught.value)


def test_no_action_leaves_a_terminal_state(standard):
    for state in (s for s in standard.states if s.terminal):
        for role in ("citizen", "officer", "admin", "service"):
            assert standard.allowed_actions(state.code, role) == ()
    with pytest.raises(IllegalTransition):
        standard.next_state(10, "return_result", "officer")


def test_unknown_action_or_state_is_an_illegal_transition(standard):
    with pytest.raises(IllegalTransition, match="no action 'teleport'"):
        standard.next_state(1, "teleport", "officer")
    with pytest.raises(IllegalTransition, match="unknown state 42"):
        standard.next_state(42, "receive", "officer")
    with pytest.raises(UnknownAction):
        standard.action("teleport")


def test_wrong_role_is_refused_naming_role_action_and_state(standard):
    with pytest.raises(ActionNotAllowed) as caught:
        standard.next_state(4, "approve", "citizen")
    error = caught.value
    assert (error.state, error.action, error.role) == (4, "approve", "citizen")
    assert "'citizen'" in str(error) and "'approve'" in str(error) and "state 4" in str(error)
    with pytest.raises(ActionNotAllowed):
        standard.next_state(1, "withdraw", "officer")


def test_legality_is_checked_before_the_role(standard):
    # A citizen asking to approve a new dossier learns the step is illegal, not forbidden.
    with pytest.raises(IllegalTransition):
        standard.next_state(1, "approve", "citizen")


def test_allowed_actions_depend_on_state_and_role(standard):
    assert [a.name for a in standard.allowed_actions(1, "officer")] == ["receive", "reject"]
    assert [a.name for a in standard.allowed_actions(1, "citizen")] == ["withdraw"]
    assert [a.name for a in standard.allowed_actions(4, "admin")] == ["stop"]
    assert [a.name for a in standard.allowed_actions(5, "citizen")] == ["supplement", "withdraw"]


def test_states_carry_sla_in_working_days(with_payment):
    assert with_payment.state(6).sla_days == 5
    assert with_payment.state(4).sla_days is None


# -- validation on load ----------------------------------------------------------------------


def test_small_workflow_loads(tmp_path):
    workflow = Catalogue.load(data_dir(tmp_path, SMALL)).workflow("small")
    assert workflow.next_state(1, "process", "officer") == 4


def test_action_into_an_unknown_state_is_refused(tmp_path):
    text = edited("to: 10,", "to: 11,")
    error = refused(tmp_path, text, "to: 11", "workflows[0].actions[5].to")
    assert "unknown state 11" in error.reason


def test_action_from_an_unknown_state_is_refused(tmp_path):
    text = edited("from: [9]", "from: [2]")
    refused(tmp_path, text, "from: [2]", "workflows[0].actions[5].from[0]")


def test_unreachable_state_is_refused(tmp_path):
    text = edited(
        "      - {name: request_supplement, from: [4], to: 5, roles: [officer]}\n", ""
    ).replace("from: [1, 5], to: 7", "from: [1], to: 7")
    text += "      - {name: stop, from: [5], to: 7, roles: [officer]}\n"
    error = refused(tmp_path, text, "{code: 5,", "workflows[0].states[2]")
    assert "unreachable" in error.reason


def test_terminal_state_with_an_exit_is_refused(tmp_path):
    text = edited("from: [9], to: 10", "from: [9, 10], to: 10")
    error = refused(tmp_path, text, "from: [9, 10]", "workflows[0].actions[5].from[1]")
    assert "terminal state 10" in error.reason


def test_non_terminal_state_without_exit_is_refused(tmp_path):
    text = edited("      - {name: return_result, from: [9], to: 10, roles: [officer]}\n", "")
    error = refused(tmp_path, text, "{code: 9,", "workflows[0].states[4]")
    assert "no exit" in error.reason


def test_state_that_cannot_end_is_refused(tmp_path):
    # Every state is reachable and has an exit, but 4 and 5 only lead to each other.
    text = edited("from: [4], to: 9", "from: [1], to: 9").replace(
        "from: [1, 5], to: 7", "from: [1], to: 7"
    )
    error = refused(tmp_path, text, "{code: 4,", "workflows[0].states[1]")
    assert "no path from state 4 to a terminal state" in error.reason


def test_unknown_role_is_refused(tmp_path):
    text = edited("to: 9, roles: [officer]", "to: 9, roles: [clerk]")
    error = refused(tmp_path, text, "clerk", "workflows[0].actions[4].roles[0]")
    assert "unknown role 'clerk'" in error.reason


def test_status_code_outside_the_national_list_is_refused(tmp_path):
    text = edited("{code: 7, name", "{code: 11, name")
    refused(tmp_path, text, "code: 11", "workflows[0].states[3].code")


def test_duplicate_action_name_is_refused(tmp_path):
    text = edited("{name: approve,", "{name: process,")
    error = refused(tmp_path, text, "{name: process, from: [4]", "workflows[0].actions[4].name")
    assert "duplicate" in error.reason


def test_terminal_initial_state_is_refused(tmp_path):
    text = edited("initial: 1", "initial: 10")
    refused(tmp_path, text, "initial: 10", "workflows[0].initial")


# -- the drawing -----------------------------------------------------------------------------


def test_mermaid_diagram_has_every_state_and_edge(standard):
    diagram = render_workflow_mermaid(standard)
    assert diagram.startswith("```mermaid\nstateDiagram-v2\n")
    assert "[*] --> s1" in diagram
    assert "s1 --> s2: receive (officer)" in diagram
    assert "s4 --> s8: stop (officer, admin)" in diagram
    for state in standard.states:
        assert f"as s{state.code}\n" in diagram
    assert "s10 --> [*]" in diagram


def test_docs_page_is_written_and_checked(tmp_path):
    page = tmp_path / "workflows.md"
    assert draw_workflows.main(["--output", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.count("```mermaid") == 2
    assert "| LLTP-001 |" in text
    assert draw_workflows.main(["--output", str(page), "--check"]) == 0
    page.write_text(text + "edited\n", encoding="utf-8")
    assert draw_workflows.main(["--output", str(page), "--check"]) == 1


def test_committed_docs_page_matches_the_data():
    assert draw_workflows.main(["--output", str(REPO_ROOT / "docs/workflows.md"), "--check"]) == 0


def test_the_workflow_is_a_kit_transition_table_with_the_events_the_service_emits():
    workflow = Catalogue.load(event_of=events.action_event).workflow("standard")
    withdraw = [(r.source, r.target) for r in workflow.table.rows if r.trigger == "withdraw"]
    assert withdraw == [(1, 7), (2, 7), (5, 7)]
    assert workflow.table.row(1, "receive").event == events.ACTION_EVENTS["receive"]
    assert Catalogue.load().workflow("standard").table.row(1, "receive").event == ""
    with pytest.raises(IllegalTransition) as caught:
        workflow.next_state(2, "approve", "officer")
    assert str(caught.value) == (
        "workflow 'standard': action 'approve' is not allowed in state 2 (Đã tiếp nhận); "
        "it is allowed from: 4"
    )
