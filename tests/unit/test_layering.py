"""The layering rule (docs/adr/0079-layering.md), read off the source with `ast`.

Inside each service, imports point inward: entrypoints (service.py, cli, __main__) -> adapters
-> domain, and no module imports, at module level, one that imports it back. Imports under
``if TYPE_CHECKING:`` are for annotations only and do not count. The domain imports no Kafka,
gRPC, SQL or HTTP library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p for p in (ROOT / "services").glob("*/motcua_*") if p.is_dir())
FORBIDDEN_IN_DOMAIN = ("kafka", "grpc", "sqlalchemy", "psycopg", "httpx", "urllib.request")


def _module_name(package: Path, path: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path, module: str) -> set[str]:
    """The modules ``path`` imports when it is imported (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = node.test
                name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
                if name == "TYPE_CHECKING":
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)

    visit(tree.body)
    return found


def _graph(package: Path) -> dict[str, set[str]]:
    modules = {
        _module_name(package, path): path
        for path in package.rglob("*.py")
        if "migrations" not in path.parts
    }
    return {
        name: {m for m in _runtime_imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph``, or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_no_import_circle_inside_the_service(package: Path) -> None:
    cycle = _cycle(_graph(package))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_the_domain_imports_no_adapter_and_no_infrastructure(package: Path) -> None:
    name = package.name
    for path in (package / "domain").rglob("*.py"):
        module = _module_name(package, path)
        for imported in _runtime_imports(path, module):
            assert not imported.startswith(FORBIDDEN_IN_DOMAIN), f"{module} imports {imported}"
            inward = imported.startswith(f"{name}.domain") or not imported.startswith(name)
            assert inward, f"{module} imports {imported}, outside the domain"


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


SERVICE_FILE_LIMIT = 350


@pytest.mark.parametrize("package", SERVICES, ids=lambda p: p.name)
def test_the_service_file_only_orchestrates_within_its_line_budget(package: Path) -> None:
    """service.py declares and wires; use cases, policy and mapping live elsewhere (issue 15)."""
    lines = len((package / "service.py").read_text().splitlines())
    assert lines <= SERVICE_FILE_LIMIT, f"{package.name}/service.py has {lines} lines"


def test_every_state_machine_is_one_kit_transition_table() -> None:
    """Payment's payments and refunds, notify's deliveries and every dossier workflow."""
    from motcua_dossier.domain.catalogue import Catalogue
    from motcua_dossier.events import action_event
    from motcua_kit.transitions import TransitionTable
    from motcua_notify.domain import states as notify_states
    from motcua_payment.domain import states as payment_states

    assert isinstance(payment_states.TRANSITIONS, TransitionTable)
    assert isinstance(notify_states.TRANSITIONS, TransitionTable)
    data = ROOT / "services" / "dossier" / "motcua_dossier" / "data"
    workflows = Catalogue.load(data, event_of=action_event).workflows()
    assert workflows and all(isinstance(w.table, TransitionTable) for w in workflows)
