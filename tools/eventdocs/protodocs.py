"""Comments of the .proto files, keyed by element full name, for the catalogue's field docs.

The generated Python descriptors (motcua-contracts) carry no source info, so the comments come
from a descriptor set compiled with ``--include_source_info`` by grpc_tools' protoc (the same
compiler ``scripts/gen_protos.sh`` uses; no buf or network needed). The compiled descriptors
are also compared with the generated ones, so a stale ``packages/contracts`` cannot produce a
catalogue that disagrees with the code subscribers import.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

# FileDescriptorProto / DescriptorProto / EnumDescriptorProto field numbers (descriptor.proto).
_FILE_MESSAGE = 4
_FILE_ENUM = 5
_MSG_FIELD = 2
_MSG_NESTED = 3
_MSG_ENUM = 4
_ENUM_VALUE = 2


class ProtoError(RuntimeError):
    """The protos did not compile, or the generated code disagrees with them."""


@dataclass
class ProtoDocs:
    """Comments by full name: ``pkg.Message``, ``pkg.Message.field``, ``pkg.Enum.VALUE``."""

    comments: dict[str, str] = field(default_factory=dict)
    files: dict[str, descriptor_pb2.FileDescriptorProto] = field(default_factory=dict)

    def comment(self, full_name: str) -> str:
        return self.comments.get(full_name, "")


def _clean(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(line.rstrip() for line in lines)


def _join(leading: str, trailing: str) -> str:
    return "\n".join(part for part in (_clean(leading), _clean(trailing)) if part)


def _walk_message(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    prefix: str,
    message: descriptor_pb2.DescriptorProto,
) -> None:
    full = f"{prefix}.{message.name}"
    names[path] = full
    for i, fld in enumerate(message.field):
        names[(*path, _MSG_FIELD, i)] = f"{full}.{fld.name}"
    for i, nested in enumerate(message.nested_type):
        _walk_message(names, (*path, _MSG_NESTED, i), full, nested)
    for i, enum in enumerate(message.enum_type):
        _walk_enum(names, (*path, _MSG_ENUM, i), full, enum)


def _walk_enum(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    prefix: str,
    enum: descriptor_pb2.EnumDescriptorProto,
) -> None:
    full = f"{prefix}.{enum.name}"
    names[path] = full
    for i, value in enumerate(enum.value):
        names[(*path, _ENUM_VALUE, i)] = f"{full}.{value.name}"


def docs_from_descriptor_set(fds: descriptor_pb2.FileDescriptorSet) -> ProtoDocs:
    """Comments of every element of every file in a descriptor set compiled with source info."""
    docs = ProtoDocs()
    for file in fds.file:
        docs.files[file.name] = file
        names: dict[tuple[int, ...], str] = {}
        for i, message in enumerate(file.message_type):
            _walk_message(names, (_FILE_MESSAGE, i), file.package, message)
        for i, enum in enumerate(file.enum_type):
            _walk_enum(names, (_FILE_ENUM, i), file.package, enum)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name is None:
                continue
            text = _join(location.leading_comments, location.trailing_comments)
            if text:
                docs.comments[name] = text
    return docs


def compile_protos(protos_dir: Path, files: Iterable[str] | None = None) -> ProtoDocs:
    """Compile ``protos_dir`` (every ``*.proto`` unless ``files``) with source info."""
    import grpc_tools

    include = resources.files(grpc_tools) / "_proto"
    chosen = (
        sorted(files)
        if files is not None
        else sorted(str(p.relative_to(protos_dir)) for p in protos_dir.rglob("*.proto"))
    )
    if not chosen:
        raise ProtoError(f"no .proto files under {protos_dir}")
    with tempfile.TemporaryDirectory(prefix="eventdocs-") as tmp:
        out = Path(tmp) / "descriptors.binpb"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{protos_dir}",
                f"-I{include}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *chosen,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ProtoError(f"protoc failed on {protos_dir}:\n{result.stderr.strip()}")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return docs_from_descriptor_set(fds)
