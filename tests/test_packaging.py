"""Packaging: every package imitlab imports is declared (core or an extra), the extras say what to install when
missing, and the Makefile's CPU torch satisfies the range pyproject declares."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from imitlab.extras import EXTRAS, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Imported inside try/except on purpose: openai >= 3 talks through httpx2, older releases do not ship it.
GUARDED = {"httpx2"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """Distribution names per group: "core" and each extra (self-references like imitlab[all] expanded)."""
    extras = PROJECT["optional-dependencies"]

    def expand(reqs: list[str]) -> set[str]:
        names: set[str] = set()
        for r in reqs:
            req = Requirement(r)
            if _norm(req.name) == "imitlab":
                names |= set().union(*(expand(extras[extra]) for extra in req.extras))
            else:
                names.add(_norm(req.name))
        return names

    return {"core": expand(PROJECT["dependencies"]), **{name: expand(reqs) for name, reqs in extras.items()}}


def _imports() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in imitlab/, with the files that import them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "imitlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "imitlab":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = set().union(*_declared().values())
    undeclared = {}
    for module, files in _imports().items():
        if module in GUARDED:
            continue
        # a module not installed here (an extra this venv lacks) is taken to be its distribution's name
        provided_by = {_norm(d) for d in distributions.get(module, [])} or {_norm(module)}
        if not provided_by & declared:
            undeclared[module] = (sorted(provided_by), sorted(files)[:3])
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert {"pyyaml", "pydantic", "jinja2", "huggingface-hub"} <= _declared()["core"]


def test_extras_helper_matches_pyproject() -> None:
    """imitlab.extras names each extra's modules; those modules come from that extra's distributions."""
    distributions = importlib.metadata.packages_distributions()
    groups = _declared()
    for extra, modules in EXTRAS.items():
        for module in modules:
            assert {_norm(d) for d in distributions.get(module, [])} & groups[extra], (extra, module)
    assert groups["all"] == set().union(*(groups[e] for e in ("data", "rate", "report", "track", "export")))
    assert groups["all"] <= groups["dev"] and not groups["gpu"] & groups["all"]  # vLLM pins its own torch


def test_torch_is_a_range_the_makefile_pin_satisfies() -> None:
    (torch,) = [Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == "torch"]
    assert not any(s.operator == "==" for s in torch.specifier), torch
    pin = re.search(r"pip install --quiet torch==([\d.]+)", (ROOT / "Makefile").read_text())
    assert pin is not None and torch.specifier.contains(pin.group(1)), (str(torch.specifier), pin)
    assert not torch.specifier.contains("3.0.0")


def test_a_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    with pytest.raises(MissingExtraError) as err:
        require("rate", "imitlab rate serve")
    assert str(err.value) == "imitlab rate serve needs uvicorn (not installed): pip install 'imitlab[rate]'"
    require("report", "the study report's plots")  # installed here: no error


def test_the_cli_is_the_top_floor_and_declares_shared_options_once() -> None:
    """Nothing below imports imitlab.cli (the CLI imports the API, never the other way), and the options every
    command group takes are declared in imitlab/cli/options.py only."""
    cli = ROOT / "imitlab" / "cli"
    importers = []
    for path in (ROOT / "imitlab").rglob("*.py"):
        if path.is_relative_to(cli) or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            if any(m == "imitlab.cli" or m.startswith("imitlab.cli.") for m in modules):
                importers.append(str(path.relative_to(ROOT)))
    assert not importers, f"imitlab.cli is the top floor; these import it: {importers}"
    for flag in ("--cache", "--data-dir", "--base-url"):
        declared = [p.name for p in sorted(cli.glob("*.py")) if f'"{flag}"' in p.read_text(encoding="utf-8")]
        assert declared == ["options.py"], (flag, declared)


def test_the_lower_floors_import_no_stage_above_them() -> None:
    """docs/architecture.md's floors: models, data and prompts (and the floor's modules) never import a stage,
    the study or the CLI, even lazily inside a function: a stage is handed what it needs (a model object,
    the evaluation-set catalogue) by its caller."""
    above = ("imitlab.evals", "imitlab.judge", "imitlab.study", "imitlab.train", "imitlab.collect", "imitlab.cli",
             "imitlab.eval_sets", "imitlab.rate", "imitlab.hub")  # fmt: skip
    lower = [*(ROOT / "imitlab" / d for d in ("models", "data", "prompts"))]
    floor = [ROOT / "imitlab" / f for f in ("fileio.py", "config.py", "errors.py", "stats.py", "stage_config.py")]
    files = [p for d in lower for p in d.rglob("*.py")] + [p for p in floor if p.exists()]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for m in modules:
                if any(m == a or m.startswith(a + ".") for a in above):
                    offenders.append(f"{path.relative_to(ROOT)}: {m}")
    assert not offenders, offenders
