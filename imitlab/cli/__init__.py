"""The ``imitlab`` command line: ``app`` (the typer app) and ``run`` (the console script's entry point).

One module per command group, each a thin layer over the Python API (``models``, ``eval``, ``prompts``,
``collect``, ``data``, ``train``, ``judge``, ``rate``, ``export``, ``study``); the root app and its error handling
in ``app``; shared options in ``options``; consoles in ``output``; narrow-terminal tables in ``table``.
"""

from imitlab.cli.app import app, run

__all__ = ["app", "run"]
