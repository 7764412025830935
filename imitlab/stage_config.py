"""The base of every stage's configuration: one pydantic model per stage, shared by its CLI command (and that
command's ``--config FILE``), its Python API and the sweep.

Why pydantic: one validation style for every stage instead of four (hand-written checks, dataclass
``__post_init__``, the sweep's own key check, JSON loaders); types are checked at the door, a YAML file and a
keyword call go through the same code, and the error names the key. Every error is an :class:`ImitlabError`
naming where the value came from (a file, a sweep section, a Python call), the key, and for an unknown key
the known ones, so the CLI prints it without a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Self, get_args

import pydantic
import yaml

from imitlab.errors import ImitlabError


def _takes_path(annotation: Any) -> bool:
    if annotation is None:
        return False
    if isinstance(annotation, type):
        return issubclass(annotation, PurePath)
    return any(_takes_path(a) for a in get_args(annotation))


def _known_keys(cls: type[pydantic.BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """The keys of the (possibly nested) section an error points into."""
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part)) if cls else None
        annotation = field.annotation if field else None
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel) else None
    return ", ".join(sorted(cls.model_fields)) if cls else "?"


def describe_errors(
    exc: pydantic.ValidationError,
    cls: type[pydantic.BaseModel] | None,
    where: str,
    key_lines: Mapping[str, int] | None = None,
) -> str:
    """One line per problem: ``WHERE[:LINE]: KEY: what is wrong``; an unknown key lists the known ones.
    ``key_lines`` maps dotted keys to their line in the file ``where`` names (:func:`key_lines`)."""
    cls = cls or _model_named(exc.title)
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        line = _line_of(key, key_lines or {})
        where_at = f"{where}:{line}" if line else where
        if err["type"] == "extra_forbidden":
            section = "".join(f"{p}." for p in err["loc"][:-1]).rstrip(".")
            at = f"{where_at}: {section}" if section else where_at
            known = _known_keys(cls, err["loc"])
            lines.append(f"{at}: unknown key {str(err['loc'][-1])!r}; known keys: {known}")
        elif err["type"] == "missing":
            lines.append(f"{where_at}: missing required key {key!r}")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, Mapping) else "a mapping"
            lines.append(f"{where_at}: {key}: {err['msg'].removeprefix('Value error, ')} (got {shown[:80]})")
    return "\n".join(lines)


def _model_named(title: str) -> type[pydantic.BaseModel] | None:
    """The StageConfig subclass a ValidationError is about (its title is the class name), for the CLI's message."""
    stack: list[type[pydantic.BaseModel]] = [StageConfig]
    while stack:
        cls = stack.pop()
        if cls.__name__ == title:
            return cls
        stack.extend(cls.__subclasses__())
    return None


class StageConfig(pydantic.BaseModel):
    """A stage's settings. Unknown keys are refused; a ``pathlib.Path`` given for a ``str`` field is accepted
    (callers pass either); assignment after construction is allowed and not re-validated.

    A keyword call (the Python API) raises pydantic's ``ValidationError`` (a ``ValueError``) naming the field;
    :meth:`build` and :meth:`from_file` (files, sweep sections, ``--config``) raise an :class:`ImitlabError` naming
    the file and key, and the CLI prints either as one line per problem (:func:`describe_errors`)."""

    model_config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _paths_to_str(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: os.fspath(v) if isinstance(v, PurePath) and k in fields and not _takes_path(fields[k].annotation) else v
            for k, v in data.items()
        }

    @classmethod
    def build(cls, raw: Any, where: str, *, lines: Mapping[str, int] | None = None, **fixed: Any) -> Self:
        """Validate a mapping read from ``where`` (a file, a sweep section); ``fixed`` keys are set by the caller
        and win over the mapping; ``lines`` (dotted key -> line in the file) puts the line in an error."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ImitlabError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
        try:
            return cls.model_validate({**raw, **fixed})
        except pydantic.ValidationError as exc:
            raise ImitlabError(describe_errors(exc, cls, where, lines)) from None

    @classmethod
    def from_file(cls, path: str | Path, **fixed: Any) -> Self:
        """Settings from a YAML or JSON file (a mapping of this stage's keys)."""
        return cls.build(read_config_file(path), str(path), lines=key_lines(path), **fixed)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings (paths as strings), for manifests and cache keys."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) mapping; errors name the file, and the line where YAML can tell it."""
    from imitlab.fileio import read_text

    if not Path(path).is_file():
        raise ImitlabError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}" if mark else ""
        column = f" at column {mark.column + 1}" if mark else ""
        raise ImitlabError(f"{path}{at}: not valid YAML ({exc.problem or exc.context}{column})") from None
    except yaml.YAMLError as exc:
        raise ImitlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ImitlabError(f"{path}: YAML nested too deeply") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ImitlabError(f"{path}: expected a mapping of settings at the top level, got {type(raw).__name__}")
    return raw


def key_lines(path: str | Path) -> dict[str, int]:
    """Dotted key -> 1-based line of that key in a YAML file (empty when the file cannot be composed)."""
    from imitlab.fileio import read_text

    try:
        root = yaml.compose(read_text(path))
    except (yaml.YAMLError, RecursionError, OSError, ImitlabError):
        return {}
    found: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    name = f"{prefix}{key.value}"
                    found.setdefault(name, key.start_mark.line + 1)
                    walk(value, name + ".")

    walk(root, "")
    return found


def _line_of(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key`` or of the nearest enclosing key the file has (a list item's error points at its list)."""
    parts = key.split(".")
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return None
