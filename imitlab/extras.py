"""Optional parts of imitlab (pyproject's extras): a command that needs one says which extra to install."""

from __future__ import annotations

import importlib.util

from imitlab.errors import ImitlabError

# extra -> the modules it provides (import names), as declared in pyproject.toml's [project.optional-dependencies]
EXTRAS: dict[str, tuple[str, ...]] = {
    "data": ("datasets",),
    "rate": ("starlette", "uvicorn", "multipart"),
    "report": ("matplotlib",),
    "track": ("tensorboard",),
    "export": ("sentencepiece",),
    "cluster": ("ray",),
}

_DISTRIBUTIONS = {"multipart": "python-multipart"}  # import names that differ from what pip installs


class MissingExtraError(ImitlabError):
    """A command needs a package from one of imitlab's extras, and it is not installed."""


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise a one-line error naming the extra when any of its modules (or ``modules``) is missing.

    ``what`` says what needs it ("imitlab rate serve"), so the message reads as the user's own command.
    """
    wanted = modules if modules is not None else EXTRAS[extra]
    missing = [_DISTRIBUTIONS.get(m, m) for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{what} needs {', '.join(missing)} (not installed): pip install 'imitlab[{extra}]'")
