"""Models: specs, packaged offline models, GGUF->HF conversion, llama.cpp serving, the chat client."""

from imitlab.models.catalog import PackagedModel, get_packaged, packaged_models
from imitlab.models.client import ChatClient, ChatResult
from imitlab.models.server import LlamaServer
from imitlab.models.spec import ModelSpec, parse_spec

__all__ = [
    "ChatClient",
    "ChatResult",
    "LlamaServer",
    "ModelSpec",
    "PackagedModel",
    "get_packaged",
    "packaged_models",
    "parse_spec",
]
