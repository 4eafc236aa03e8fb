"""Validity of the AsyncAPI document against the official AsyncAPI 3.0.0 JSON Schema (vendored
in ``schemas/``, see its README), offline, plus the checks that schema cannot express."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "asyncapi-3.0.0.json"


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def _refs(node: Any, path: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield path, ref
        for key, value in node.items():
            yield from _refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{path}/{i}")


def _resolves(document: Mapping[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def asyncapi_errors(document: Mapping[str, Any]) -> list[str]:
    """Every reason ``document`` is not a valid AsyncAPI 3.0.0 document (empty when valid)."""
    errors = []
    for error in sorted(_validator().iter_errors(dict(document)), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{where}: {error.message[:300]}")
    # The JSON Schema cannot check that references point somewhere: a dangling $ref would
    # pass it and break every AsyncAPI tool.
    errors += [
        f"{where}: $ref {ref} points nowhere"
        for where, ref in _refs(document)
        if not _resolves(document, ref)
    ]
    return errors
