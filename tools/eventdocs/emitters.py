"""Which CloudEvents types the services emit, read off their ``events`` modules.

A service emits on the topics its ``Service.publishes`` names the types of its own prefix
(``vn.motcua.<service>.``) that its ``events`` module holds (as constants, or inside dicts and
tuples, however they are built). No service spells a type elsewhere: every name comes from the
registry's generated constants (``motcua.topics``, ADR 0078), and a contract test fails on a
topic or type literal anywhere under services/. A type found here and missing from the
registry is undocumented: ``check`` and the contract tests fail on it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from motcua_kit.registry import TopicRegistry
from motcua_kit.service import Service

_TYPE = re.compile(r"^vn\.motcua\.([a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\.v[1-9][0-9]*$")
_SKIP_DIRS = {"migrations", "tests", "__pycache__"}


@dataclass(frozen=True)
class Emission:
    """One type one service can emit, and where in the code it was found."""

    service: str
    topic: str
    type: str
    where: str


@dataclass(frozen=True)
class ServiceCode:
    """A service's package as the scanner sees it."""

    name: str  # dossier
    package: str  # motcua_dossier
    path: Path  # folder of the package


def discover(services_dir: Path) -> list[ServiceCode]:
    """Every ``services/<name>/motcua_<name>/`` package."""
    found = []
    for folder in sorted(p for p in services_dir.iterdir() if p.is_dir()):
        package = folder / f"motcua_{folder.name}"
        if (package / "__init__.py").exists():
            found.append(ServiceCode(folder.name, package.name, package))
    return found


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif depth < 3 and isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif depth < 3 and isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item, depth + 1)


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def published_topics(code: ServiceCode) -> tuple[str, ...]:
    """The union of ``publishes`` of the service classes defined in ``<package>.service``."""
    module = _optional_module(f"{code.package}.service")
    if module is None:
        return ()
    topics: set[str] = set()
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, Service) and cls is not Service and cls.__module__ == module.__name__:
            topics.update(getattr(cls, "publishes", ()))
    return tuple(sorted(topics))


def scan(code: ServiceCode) -> list[Emission]:
    """The types ``code`` can emit (none when it publishes no topic)."""
    topics = published_topics(code)
    if not topics:
        return []
    events = _optional_module(f"{code.package}.events")
    found: dict[str, str] = {}
    if events is not None:
        for name, value in vars(events).items():
            if name.startswith("__"):
                continue
            for text in _strings(value):
                if _TYPE.match(text):
                    found.setdefault(text, f"{events.__name__}.{name}")
    out = []
    for event_type, where in sorted(found.items()):
        producer = _TYPE.match(event_type)
        assert producer is not None
        if producer.group(1) != code.name:
            continue  # another service's type: consumed, not emitted
        topic = next((t for t in topics if t.startswith(f"motcua.{code.name}.")), topics[0])
        out.append(Emission(code.name, topic, event_type, where))
    return out


def scan_all(services_dir: Path) -> list[Emission]:
    return [e for code in discover(services_dir) for e in scan(code)]


def undocumented(emissions: Iterable[Emission], registry: TopicRegistry) -> list[str]:
    """A problem for every emitted type, or published topic, the registry does not list."""
    problems = []
    for e in emissions:
        try:
            topic = registry.topic(e.topic)
        except Exception:
            problems.append(
                f"{e.service} publishes topic {e.topic}, which the registry "
                "(contracts/topics.yaml) does not list"
            )
            continue
        if topic.producer != e.service:
            problems.append(
                f"{e.service} publishes {e.topic}, whose registered producer is {topic.producer}"
            )
        elif e.type not in topic.types:
            problems.append(
                f"{e.service} emits {e.type} ({e.where}) on {e.topic}, but the "
                "registry (contracts/topics.yaml) does not document it"
            )
    return problems


def unemitted(emissions: Iterable[Emission], registry: TopicRegistry) -> list[str]:
    """A problem for every documented, non-deprecated type no service's code can emit."""
    emitted = {e.type for e in emissions}
    return [
        f"{event.type} is documented on {topic.name} but {topic.producer} never emits it: "
        "remove it from contracts/topics.yaml or mark it deprecated"
        for topic in registry.topics
        for event in topic.events
        if event.type not in emitted and not event.deprecated
    ]
