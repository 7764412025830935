"""Errors imitlab raises on purpose. The CLI prints these without a traceback."""


class ImitlabError(Exception):
    """Base class: a problem the user can act on, with a message that says how."""


class UnknownModelError(ImitlabError, KeyError):
    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingPackageError(ImitlabError):
    """A packaged model's PyPI package is not installed and could not be installed."""


class ChecksumError(ImitlabError):
    """A downloaded or assembled file does not have the sha256 it must have."""


class ServerError(ImitlabError):
    """The llama.cpp server could not be started or died."""


class ModelSpecError(ImitlabError, ValueError):
    """A model spec string could not be understood."""
