"""imitlab: imitate a strong LLM into a model you own, and measure honestly what you got."""

__version__ = "0.1.0"
