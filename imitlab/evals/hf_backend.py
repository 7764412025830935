"""Local transformers backend: log-likelihood and greedy/sampled generation with shared-prefix KV reuse.

Every k-shot prompt of a benchmark (or of one MMLU subject) starts with the same few-shot prefix. This
backend runs that prefix through the model once, keeps its key/value cache, and then only runs each item's
own tokens (batched, left-padded *after* the prefix, with explicit position ids) on top of it. Only the
positions whose log-probabilities are needed go through the output layer (``logits_to_keep``).

The shared prefix is found at the token level (the longest common token prefix of a group's requests), not
by tokenizing the prefix text alone: BPE merges across the boundary ("\\n\\n" + "The" tokenizes differently
from "\\n\\n" on its own), so the cached tokens are exactly those a full forward pass would have seen.
Requests are tokenized the way lm-evaluation-harness does (context + continuation encoded together, then
split), so scores agree with it.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from imitlab.devices import describe, dtype_name, resolve
from imitlab.models.base import (
    Capabilities,
    GenRequest,
    LLRequest,
    LLResult,
    Message,
    Mode,
    UnsupportedRequest,
    cut_at_stop,
    prompt_of,
)
from imitlab.models.engine import RequestFailed, Response

__all__ = ["GenRequest", "HFBackend", "HFModel", "LLRequest", "LLResult"]  # the request types live in models.base

log = logging.getLogger(__name__)

# Below this many shared tokens the extra prefix pass is not worth it.
_MIN_PREFIX = 8
# Prefix caches kept between calls (MMLU scores one subject at a time, so a few suffice).
_KEEP_PREFIXES = 4


def _common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    n = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < n and row[i] == first[i]:
            i += 1
        n = i
    return n


class HFModel:
    """A causal LM from a local HF directory (or hub id when online), scored and sampled in-process.

    Implements :class:`~imitlab.models.base.Model`: it sees every logit, so it scores any continuation exactly.
    """

    capabilities = Capabilities(loglikelihood="any", top_logprobs=0)

    def __init__(
        self,
        path: str,
        *,
        spec: str | None = None,
        name: str | None = None,
        batch_size: int = 16,
        device: str = "auto",
        dtype: str = "auto",
        threads: int | None = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.path = path
        self.spec = spec or f"hf:{path}"  # the spec it was opened from (for manifests)
        self.name = name or Path(path).name
        self._identity: str | None = None
        self.device, self.dtype = resolve(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        self.model.to(self.device).eval()
        log.info("%s on %s in %s", path, describe(self.device), dtype_name(self.dtype))
        self.batch_size = batch_size
        config = self.model.config
        self.max_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self.eos_ids = set(_as_list(getattr(self.model.generation_config, "eos_token_id", None)))
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.stats = {"prefix_tokens": 0, "item_tokens": 0, "prefix_passes": 0}
        self._prefixes: OrderedDict[tuple[int, ...], DynamicCache] = OrderedDict()
        self._cache_kw = cache_keyword(self.model)

    @property
    def precision(self) -> dict[str, str]:
        """The resolved device and dtype, for manifests."""
        return {"device": describe(self.device), "dtype": dtype_name(self.dtype)}

    @property
    def identity(self) -> str:
        """The weights' digest and the dtype they run in (bf16 and fp32 answers differ); computed on first use,
        since hashing the weights takes a moment."""
        if self._identity is None:
            from imitlab.models.api_model import model_identity
            from imitlab.models.spec import ModelSpec

            weights = model_identity(ModelSpec("hf", self.path))  # hf:DIRNAME:DIGEST, or hf:HUB_ID
            if Path(self.path).is_dir():  # named as opened (a packaged model's converted dir is just "hf")
                weights = f"hf:{self.name}:{weights.rsplit(':', 1)[1]}"
            self._identity = f"{weights}:{dtype_name(self.dtype)}"
        return self._identity

    def describe(self) -> dict[str, Any]:
        return {"backend": "hf", "spec": self.spec, "identity": self.identity, "path": self.path, **self.precision}

    @property
    def usage(self) -> dict[str, Any]:
        return dict(self.stats)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def close(self) -> None:
        """Let the weights go (a sweep loads one student after another)."""
        self._prefixes.clear()
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- tokenization (lm-evaluation-harness compatible) ------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Trailing spaces of the context move to the continuation; the pair is encoded whole, then split."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]

    # -- the shared machinery ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _prefix_cache(self, tokens: Sequence[int]) -> tuple[DynamicCache | None, int]:
        """A KV cache for ``tokens`` or for its longest already-cached prefix; returns (cache, its length).

        Kept across calls (a few entries), so a benchmark scored in chunks computes its k-shot prefix once.
        """
        key = tuple(tokens)
        best = max((k for k in self._prefixes if len(k) <= len(key) and key[: len(k)] == k), key=len, default=None)
        if best is not None:
            self._prefixes.move_to_end(best)
            return self._prefixes[best], len(best)
        if len(key) < _MIN_PREFIX:
            return None, 0
        ids = torch.tensor([key], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        self.stats["prefix_tokens"] += len(key)
        self.stats["prefix_passes"] += 1
        filled = filled_cache(out)  # the cache the model filled
        self._prefixes[key] = filled
        while len(self._prefixes) > _KEEP_PREFIXES:
            self._prefixes.popitem(last=False)
        return filled, len(key)

    def _expand(self, prefix: DynamicCache | None, batch: int) -> DynamicCache | None:
        if prefix is None:
            return None
        # Expanded views: the first update concatenates, so the shared prefix tensors are never written to.
        data = [
            (layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)) for layer in prefix.layers
        ]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    def _suffix_batch(self, rows: list[list[int]], prefix_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-pad the rows' own tokens after the prefix: ids, attention mask (prefix + rows), position ids."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        pos = torch.full((len(rows), width), prefix_len, dtype=torch.long)
        for i, row in enumerate(rows):
            pad = width - len(row)
            ids[i, pad:] = torch.tensor(row)
            mask[i, prefix_len + pad :] = 1
            pos[i, pad:] = torch.arange(prefix_len, prefix_len + len(row))
        self.stats["item_tokens"] += sum(len(r) for r in rows)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    # -- log-likelihood ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[LLRequest]) -> list[LLResult]:
        encoded = []
        for req in requests:
            ctx, cont = self.encode_pair(req.context, req.continuation)
            if not cont:
                raise ValueError(f"empty continuation after tokenization: {req.continuation!r}")
            full = (ctx + cont)[-(self.max_length + 1) :]
            encoded.append((tuple(full[:-1]), cont))
        # One model row per distinct input: choices with one-token continuations share their context's row.
        row_of: dict[tuple[int, ...], int] = {}
        rows: list[tuple[int, ...]] = []
        row_key: list[str] = []
        for (inp, _), req in zip(encoded, requests, strict=True):
            if inp not in row_of:
                row_of[inp] = len(rows)
                rows.append(inp)
                row_key.append(req.prefix_key)
        # How many final positions each row must score: its longest continuation.
        need = [1] * len(rows)
        for inp, cont in encoded:
            need[row_of[inp]] = max(need[row_of[inp]], len(cont))
        logprobs: list[torch.Tensor | None] = [None] * len(rows)  # (need, vocab) log-softmax per row
        groups: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(row_key):
            groups[key].append(i)
        for members in groups.values():
            member_rows = [rows[i] for i in members]
            shared = min(_common_prefix_len(member_rows), *(len(rows[i]) - need[i] for i in members))
            prefix, plen = self._prefix_cache(member_rows[0][:shared]) if len(members) > 1 else (None, 0)
            order = sorted(members, key=lambda i: -len(rows[i]))  # similar lengths batch together
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                ids, mask, pos = self._suffix_batch([list(rows[i][plen:]) for i in chunk], plen)
                keep = max(need[i] for i in chunk)
                out = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=pos,
                    use_cache=prefix is not None,
                    **{self._cache_kw: self._expand(prefix, len(chunk))},
                    logits_to_keep=keep,
                )
                lp = torch.log_softmax(out.logits.float(), dim=-1)
                for j, i in enumerate(chunk):
                    logprobs[i] = lp[j, keep - need[i] :]
        results = []
        for inp, cont in encoded:
            i = row_of[inp]
            lp = logprobs[i]
            assert lp is not None
            tail = lp[lp.shape[0] - len(cont) :]
            target = torch.tensor(cont, device=tail.device)
            picked = tail.gather(1, target[:, None]).squeeze(1)
            greedy = bool((tail.argmax(-1) == target).all())
            results.append(LLResult(float(picked.sum()), greedy, len(cont)))
        return results

    # -- generation -------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str | GenRequest],
        *,
        stop: Sequence[str] = (),
        max_tokens: int = 64,
        n: int = 1,
        temperature: float = 0.0,
        system: str | None = None,
        mode: Mode = "completions",
        desc: str = "generate",
        seed: int = 0,
    ) -> list[list[str]]:
        """``n`` completions per prompt, cut at the first stop string; greedy when temperature is 0.

        ``mode="completions"`` continues each prompt as raw text (after ``system`` and a blank line, as the API
        model does); ``"chat"`` renders it as a user turn with the model's chat template.
        """
        requests = [prompt_of(p) for p in prompts]
        if mode == "chat":
            rows = [self._chat_ids(_turns(system, r.prompt)) for r in requests]
        elif mode == "completions":
            rows = [self.encode(f"{system}\n\n{r.prompt}" if system else r.prompt) for r in requests]
        else:
            raise ValueError(f"mode must be 'chat' or 'completions', got {mode!r}")
        return self._generate_rows(rows, [r.prefix_key for r in requests], stop, max_tokens, n, temperature, seed)

    def chat(
        self, conversations: Sequence[Sequence[Message]], *, desc: str = "chat", allow_empty: bool = True,
        **params: Any,
    ) -> list[Response | RequestFailed]:  # fmt: skip
        """One answer per conversation, rendered with the model's chat template; a
        :class:`~imitlab.models.engine.RequestFailed` for an empty answer when ``allow_empty`` is false.

        Takes the OpenAI parameters that mean something here: ``max_tokens``, ``temperature``, ``stop``, ``seed``.
        """
        from imitlab.models.engine import Request
        from imitlab.models.retry import Failure

        unknown = sorted(set(params) - _CHAT_PARAMS)
        if unknown:
            raise UnsupportedRequest(
                f"{self.spec}: chat takes {', '.join(sorted(_CHAT_PARAMS))}; not {', '.join(unknown)}"
            )
        stop = params.get("stop") or ()
        stop = [stop] if isinstance(stop, str) else list(stop)
        start = time.perf_counter()
        rows = [self._chat_ids(list(c)) for c in conversations]
        texts = self._generate_rows(rows, [""] * len(rows), stop, int(params.get("max_tokens") or 256), 1,
                                    float(params.get("temperature") or 0.0), int(params.get("seed") or 0))  # fmt: skip
        latency = round((time.perf_counter() - start) / max(1, len(rows)), 3)  # the batch's time, shared out
        answers: list[Response | RequestFailed] = []
        for i, (row, (text,)) in enumerate(zip(rows, texts, strict=True)):
            if not allow_empty and not text.strip():
                request = Request.chat(conversations[i], tag=f"{desc}#{i}")
                answers.append(RequestFailed(request, Failure("empty completion", retryable=False), 1))
                continue
            answers.append(Response(text=text, finish_reason=None, prompt_tokens=len(row),
                                    completion_tokens=len(self.tokenizer.encode(text, add_special_tokens=False)),
                                    model=self.name, latency_s=latency))  # fmt: skip
        return answers

    def _chat_ids(self, messages: list[Message]) -> list[int]:
        from imitlab.models.tokenizer import ensure_chat_template

        ensure_chat_template(self.tokenizer)  # a base model gets imitlab's plain template, as in training
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template writes its own BOS

    @torch.inference_mode()
    def _generate_rows(
        self,
        rows: list[list[int]],
        prefix_keys: list[str],
        stop: Sequence[str],
        max_tokens: int,
        n: int,
        temperature: float,
        seed: int,
    ) -> list[list[str]]:
        generator = torch.Generator(device=self.device).manual_seed(seed)
        encoded = [row[-(self.max_length - max_tokens) :] for row in rows]
        outputs: list[list[str]] = [[] for _ in rows]
        groups: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(prefix_keys):
            groups[key].append(i)
        for members in groups.values():
            member_rows = [encoded[i] for i in members]
            shared = min(_common_prefix_len(member_rows), min(len(r) for r in member_rows) - 1)
            prefix, plen = self._prefix_cache(member_rows[0][:shared]) if len(members) * n > 1 else (None, 0)
            jobs = [i for i in sorted(members, key=lambda i: -len(encoded[i])) for _ in range(n)]
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                texts = self._generate_batch(
                    [encoded[i][plen:] for i in chunk], prefix, plen, stop, max_tokens, temperature, generator
                )
                for i, text in zip(chunk, texts, strict=True):
                    outputs[i].append(text)
        return outputs

    def _generate_batch(
        self,
        rows: list[list[int]],
        prefix: DynamicCache | None,
        plen: int,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float,
        generator: torch.Generator,
    ) -> list[str]:
        ids, mask, pos = self._suffix_batch(rows, plen)
        cache = self._expand(prefix, len(rows))
        if cache is None:
            cache = DynamicCache(config=self.model.config)
        alive = list(range(len(rows)))  # original row index of each batch row still generating
        generated: list[list[int]] = [[] for _ in rows]
        texts = [""] * len(rows)
        next_pos = pos[:, -1] + 1
        for _ in range(max_tokens):
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                **{self._cache_kw: cache},
            )  # fmt: skip
            logits = out.logits[:, -1].float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                tokens = logits.argmax(-1)
            keep = []
            for b, row in enumerate(alive):
                token = int(tokens[b])
                if token in self.eos_ids:
                    continue
                generated[row].append(token)
                text = self.tokenizer.decode(generated[row], skip_special_tokens=True)
                texts[row] = cut_at_stop(text, stop)
                if len(texts[row]) < len(text):
                    continue  # a stop string appeared
                keep.append(b)
            if not keep:
                break
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                tokens, mask, next_pos = tokens[index], mask[index], next_pos[index]
                alive = [alive[b] for b in keep]
            ids = tokens[:, None]
            pos = next_pos[:, None]
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=self.device)], dim=1)
            next_pos = next_pos + 1
        return texts


HFBackend = HFModel  # the name it had before models.base.Model (bench/eval.py, older scripts)
_CHAT_PARAMS = {"max_tokens", "temperature", "stop", "seed"}


def _turns(system: str | None, prompt: str) -> list[Message]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def cache_keyword(model: torch.nn.Module) -> str:
    """The name ``model.forward`` takes its KV cache by: ``past_key_values`` up to transformers 5.17 at least,
    ``cache`` in later 5.x (which still accepts the old name, with a deprecation warning)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def filled_cache(out: object) -> DynamicCache:
    """The KV cache a forward pass returned, under either name (see :func:`cache_keyword`)."""
    fields = getattr(type(out), "__dataclass_fields__", {})
    return out.cache if "cache" in fields else out.past_key_values  # type: ignore[attr-defined]


def _as_list(value: object) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]  # type: ignore[union-attr]
