#!/usr/bin/env python3
"""Generate the configuration reference, docs/configuration.md, from the settings classes.

The tables are written between the markers ``<!-- settings:begin -->`` and
``<!-- settings:end -->``; everything else in the file is left alone. One table per section
(the root settings, then each nested section), one row per setting with its environment
variable, type, default and description (the field's own ``description``, plus its bounds).

    .venv/bin/python scripts/gen_settings_doc.py           # rewrite docs/configuration.md
    .venv/bin/python scripts/gen_settings_doc.py --check   # exit 1 if it is out of date
    .venv/bin/python scripts/gen_settings_doc.py --stdout  # print the tables only

Settings without a description are listed on stderr, so that they get one.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
PREFIX = "CREDITOPS_"
DELIMITER = "__"


@dataclass(frozen=True)
class Row:
    env: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    rows: tuple[Row, ...]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    """``Model`` for a ``dict[str, Model]`` field (per-key sections such as per-model overrides)."""
    if typing.get_origin(annotation) is dict:
        args = typing.get_args(annotation)
        if len(args) == 2:
            return _model_of(args[1])
    return None


def type_name(annotation: Any) -> str:
    """A short, readable type: ``int``, ``str | None``, ``list[str]``, ``adverse | all``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return "secret" if issubclass(annotation, SecretStr) else annotation.__name__
    return str(annotation)


def default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value, default=str)}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return f"`{value}`"


_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)


def constraints(field: FieldInfo) -> tuple[str, bool]:
    """Bounds and pattern as text, and whether a list is given comma-separated (NoDecode)."""
    parts: list[str] = []
    comma_separated = False
    for meta in field.metadata:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(meta, kind):
                parts.append(f"{symbol} {getattr(meta, attr)}")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            parts.append(f"pattern `{pattern}`")
        if getattr(meta, "__name__", "") == "NoDecode":
            comma_separated = True
    return ", ".join(parts), comma_separated


def _cell(text: str) -> str:
    """One table cell: one line, reStructuredText literals as Markdown code, pipes escaped."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def _row(env: str, field: FieldInfo, undocumented: list[str], see: str = "") -> Row:
    bounds, comma = constraints(field)
    description = field.description or see
    if not description:
        undocumented.append(env)
    notes = [n for n in (bounds, "comma-separated or a JSON list" if comma else "") if n]
    if notes:
        description = f"{description} ({'; '.join(notes)})" if description else "; ".join(notes)
    return Row(
        env=f"`{env}`",
        type=type_name(field.annotation),
        default=default_text(field),
        description=_cell(description) or "—",
    )


def _first_paragraph(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return _cell(doc.split("\n\n", 1)[0]) if doc else ""


def sections(
    model: type[BaseModel], env: str, title: str, undocumented: list[str]
) -> Iterator[Section]:
    """The section of ``model`` (its scalar settings), then its nested sections in order."""
    rows: list[Row] = []
    nested: list[tuple[type[BaseModel], str, str]] = []
    for name, field in model.model_fields.items():
        var = f"{env}{name.upper()}"
        child = _model_of(field.annotation)
        per_key = _dict_value_model(field.annotation)
        if child is not None:
            nested.append((child, f"{var}{DELIMITER}", f"{title}.{name}" if title else name))
            continue
        key_title = f"{title}.{name}.<key>" if title else f"{name}.<key>"
        see = f"One entry per key; the fields are in the `{key_title}` table." if per_key else ""
        rows.append(_row(var, field, undocumented, see))
        if per_key is not None:
            nested.append((per_key, f"{var}{DELIMITER}<KEY>{DELIMITER}", key_title))
    yield Section(title or "general", _first_paragraph(model), tuple(rows))
    for child, child_env, child_title in nested:
        yield from sections(child, child_env, child_title, undocumented)


def render(root: type[BaseModel], undocumented: list[str]) -> str:
    out = [
        "Every setting is read from the environment (or from `creditops.toml` in the working",
        "directory). Nested sections use a double underscore: `CREDITOPS_SERVE__PORT=8080`.",
        "Lists and mappings are JSON unless the description says comma-separated. Generated",
        "from `creditops.settings.Settings` by `scripts/gen_settings_doc.py`; do not edit",
        "the tables by hand.",
        "",
    ]
    for section in sections(root, PREFIX, "", undocumented):
        if not section.rows:
            continue
        out.append(f"#### `{section.title}`")
        out.append("")
        if section.intro:
            out.extend([section.intro, ""])
        out.append("| variable | type | default | description |")
        out.append("|---|---|---|---|")
        out.extend(f"| {r.env} | {r.type} | {r.default} | {r.description} |" for r in section.rows)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def splice(document: str, generated: str) -> str:
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC}: markers {BEGIN} / {END} not found (in that order)")
    return f"{document[: start + len(BEGIN)]}\n{generated}{document[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    mode.add_argument("--stdout", action="store_true", help="print the generated tables")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document to update")
    args = parser.parse_args(argv)

    from creditops.settings import Settings

    undocumented: list[str] = []
    generated = render(Settings, undocumented)
    if undocumented:
        print(
            f"warning: {len(undocumented)} settings have no description: "
            + ", ".join(undocumented),
            file=sys.stderr,
        )
    if args.stdout:
        sys.stdout.write(generated)
        return 0
    current = args.doc.read_text(encoding="utf-8")
    updated = splice(current, generated)
    if args.check:
        if updated != current:
            print(
                f"{args.doc} is out of date with the settings: run "
                "`.venv/bin/python scripts/gen_settings_doc.py`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.doc}: configuration reference is up to date")
        return 0
    if updated != current:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"updated the configuration reference in {args.doc}")
    else:
        print(f"{args.doc}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
