"""Configuration of one collection run (``imitlab collect``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic

from imitlab.errors import ImitlabError
from imitlab.models.engine import EngineSettings
from imitlab.stage_config import StageConfig


class CollectConfig(StageConfig):
    teacher: str  # a model spec: packaged name, gguf:PATH or openai:MODEL
    prompts: Path  # a prompt set (JSONL, see imitlab.prompts.schema)
    out: Path  # the output data-set directory
    base_url: str | None = None  # for openai: specs
    concurrency: int = 8  # requests in flight; also the llama.cpp server's parallel slots
    timeout: float = 120.0  # seconds per request, end to end
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    n_samples: int = 1  # answers per prompt (2 gives the paper's "second teacher sample")
    system: str | None = None  # used for prompts that carry no system prompt of their own
    temperature: float | None = 0.7
    top_p: float | None = None
    max_tokens: int | None = 1024
    seed: int | None = None
    extra_params: dict[str, Any] = pydantic.Field(default_factory=dict)  # any other OpenAI body parameters
    price_prompt_per_m: float | None = None  # USD per million prompt tokens, for the cost estimate
    price_completion_per_m: float | None = None
    use_cache: bool = True
    cache_path: Path | None = None  # default: <cache root>/collect/responses.sqlite
    cache_root: Path | None = None  # imitlab cache root (models, server builds)
    retry_failed: bool = True  # on resume, retry prompts that failed before
    progress: bool = True
    ctx_per_slot: int = 4096  # llama.cpp server context per slot (packaged / gguf teachers)
    stream: bool = False  # server-sent events (long generations behind proxies with idle timeouts)
    # Batch collection (imitlab.collect.batch): at most one of the three modes.
    batch: bool = False  # through the OpenAI Batch API (/v1/files, /v1/batches)
    batch_file_only: bool = False  # write OUT/batch/requests.jsonl (for vLLM's run_batch) and stop
    merge_batch_output: Path | None = None  # merge a batch result file made elsewhere
    batch_discount: float = 0.5  # fraction of the list price a batch answer does not cost (OpenAI: half)
    batch_poll_s: float = 60.0  # longest wait between two status polls
    batch_max_requests: int = 50_000  # requests per batch (OpenAI's limit); more go as several batches
    batch_max_bytes: int = 190 * 2**20  # bytes per request file (OpenAI's limit is 200 MB)
    batch_max_rounds: int = 3  # batch rounds per run: the first, then resubmissions of what is still missing

    def model_post_init(self, context: Any, /) -> None:
        if self.concurrency < 1:
            raise ImitlabError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.n_samples < 1:
            raise ImitlabError(f"n_samples must be at least 1, not {self.n_samples}")
        if self.timeout <= 0:
            raise ImitlabError(f"timeout must be positive, not {self.timeout}")
        if self.max_retries < 0:
            raise ImitlabError(f"max_retries must be 0 or more, not {self.max_retries}")
        if not 0.0 <= self.batch_discount <= 1.0:
            raise ImitlabError(f"batch_discount is a fraction of the price, from 0 to 1, not {self.batch_discount}")
        if self.batch_poll_s <= 0 or self.batch_max_requests < 1 or self.batch_max_rounds < 1:
            raise ImitlabError("batch_poll_s, batch_max_requests and batch_max_rounds must be positive")

    def engine_settings(self) -> EngineSettings:
        """How the request engine talks to the teacher when collection opens it itself."""
        return EngineSettings(
            concurrency=self.concurrency, timeout=self.timeout, max_retries=self.max_retries,
            backoff_base=self.backoff_base, backoff_max=self.backoff_max, use_cache=self.use_cache,
            cache_path=self.cache_path, cache_root=self.cache_root, price_prompt_per_m=self.price_prompt_per_m,
            price_completion_per_m=self.price_completion_per_m, progress=self.progress, stream=self.stream,
        )  # fmt: skip

    def sampling_params(self) -> dict[str, Any]:
        """The OpenAI body parameters sent with every request (and part of the cache key)."""
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        params.update(self.extra_params)
        return {k: v for k, v in params.items() if v is not None}
