"""The local backend's shared-prefix KV reuse gives what a plain forward pass / plain generate() gives."""

from __future__ import annotations

import pytest
import torch

from imitlab.evals.hf_backend import GenRequest, HFModel, LLRequest
from imitlab.models.packaged import PulledModel

PREFIX = "Answer these questions:\n\nQ: capital of France?\nA: Paris\n\nQ: two plus two?\nA: four\n\n"
QUESTIONS = ["Q: who wrote Hamlet?\nA:", "Q: colour of the clear sky?\nA:", "Q: largest planet?\nA:"]


@pytest.fixture(scope="module")
def backend(smollm2: PulledModel) -> HFModel:
    assert smollm2.hf is not None
    return HFModel(str(smollm2.hf), batch_size=2)  # batches of 2 so padding and several batches happen


@pytest.mark.real
def test_cached_loglikelihood_equals_a_full_forward_pass(backend: HFModel) -> None:
    requests = [LLRequest(PREFIX + q, c, prefix_key="p") for q in QUESTIONS for c in (" A", " Shakespeare", " the sun")]
    before = dict(backend.stats)
    results = backend.loglikelihood(requests)
    assert backend.stats["prefix_passes"] == before["prefix_passes"] + 1  # one prefix pass for all of them
    for request, got in zip(requests, results, strict=True):
        ctx, cont = backend.encode_pair(request.context, request.continuation)
        with torch.inference_mode():
            logits = backend.model(torch.tensor([ctx + cont])).logits[0]
        logprobs = torch.log_softmax(logits, -1)
        expected = sum(float(logprobs[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
        assert got.logprob == pytest.approx(expected, abs=1e-3)
        assert got.n_tokens == len(cont)
    # A later call (the runner scores in chunks) reuses the stored prefix cache instead of recomputing it.
    again = backend.loglikelihood(requests[3:])
    assert backend.stats["prefix_passes"] == before["prefix_passes"] + 1
    assert [r.logprob for r in again] == pytest.approx([r.logprob for r in results[3:]], abs=1e-4)


@pytest.mark.real
def test_cached_batched_greedy_equals_plain_generate(backend: HFModel) -> None:
    outputs = backend.generate([GenRequest(PREFIX + q, "p") for q in QUESTIONS], stop=["\n"], max_tokens=12)
    tok = backend.tokenizer
    for question, (got,) in zip(QUESTIONS, outputs, strict=True):
        ids = tok(PREFIX + question, return_tensors="pt")
        plain = backend.model.generate(**ids, max_new_tokens=12, do_sample=False)
        expected = tok.decode(plain[0, ids.input_ids.shape[1] :], skip_special_tokens=True).split("\n")[0]
        assert got == expected
    assert any(o[0].strip() for o in outputs)
