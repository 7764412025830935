"""Device and dtype plumbing: settings resolve the same way everywhere, and every model-loading path
(the eval backend, local answer generation, training) obeys them. Runs on CPU with the code a GPU runs:
bf16 on the CPU is real; a CUDA machine is faked where only the choice of device is under test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imitlab import devices
from imitlab.errors import ImitlabError
from imitlab.evals.hf_backend import GenRequest, HFBackend, LLRequest, cache_keyword
from imitlab.models.generate import generate_answers_local
from imitlab.models.packaged import PulledModel
from imitlab.train.sft_trainer import checkpointing_arguments, train
from imitlab.train.train_config import TrainConfig

PREFIX = "Answer these questions:\n\nQ: capital of France?\nA: Paris\n\nQ: two plus two?\nA: four\n\n"
QUESTIONS = ["Q: who wrote Hamlet?\nA:", "Q: colour of the clear sky?\nA:", "Q: largest planet?\nA:"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, smollm2: PulledModel) -> Path:
    """A 2-layer, 64-wide random llama with SmolLM2's tokenizer (and chat template)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from imitlab.models.tokenizer import ensure_chat_template

    tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(smollm2.hf))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch believes there are two CUDA GPUs with bf16 (this machine's torch has no CUDA at all)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(devices, "_cuda_has_bf16", lambda device: True)


# -- resolution -------------------------------------------------------------------------------------------
def test_auto_is_cpu_fp32_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert devices.resolve() == (torch.device("cpu"), torch.float32)
    assert devices.resolve("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    assert devices.resolve("cpu", "fp16")[1] == torch.float16


def test_auto_is_the_first_gpu_in_bf16_when_there_is_one(fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert devices.resolve() == (torch.device("cuda", 0), torch.bfloat16)
    assert devices.resolve("cuda:1", "fp32") == (torch.device("cuda", 1), torch.float32)
    assert devices.resolve("cpu") == (torch.device("cpu"), torch.float32)  # auto dtype follows the device
    with pytest.raises(ImitlabError, match=r"there are 2 CUDA GPU"):
        devices.resolve_device("cuda:2")
    # A GPU without bf16 (pre-Ampere): auto falls back to fp16, and asking for bf16 is an error.
    monkeypatch.setattr(devices, "_cuda_has_bf16", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert devices.resolve()[1] == torch.float16
    with pytest.raises(ImitlabError, match="Tesla T4 has no bf16"):
        devices.resolve("cuda", "bf16")


def test_missing_or_malformed_settings_are_clear_errors() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ImitlabError, match="no CUDA GPU"):
            devices.resolve_device("cuda")
    for bad in ("gpu", "cuda:x", "CPU", ""):
        with pytest.raises(ImitlabError, match="is not a device"):
            devices.resolve_device(bad)
    with pytest.raises(ImitlabError, match=r"train\.dtype: 'half' is not a dtype"):
        devices.check_dtype("half", "train.dtype")
    assert [devices.dtype_name(t) for t in (torch.bfloat16, torch.float16, torch.float32)] == ["bf16", "fp16", "fp32"]


def test_train_config_checks_its_settings() -> None:
    base = {"base": "x", "data": "d", "out": "o"}
    with pytest.raises(ImitlabError, match="CUDA_VISIBLE_DEVICES"):
        TrainConfig(**base, device="cuda:1").validate()
    with pytest.raises(ImitlabError, match="save must be one of final, steps, none"):
        TrainConfig(**base, save="always").validate()
    with pytest.raises(ImitlabError, match="is not a dtype"):
        TrainConfig(**base, dtype="float16").validate()
    TrainConfig(**base, device="cuda", dtype="bf16", save="none").validate()


# -- the eval backend --------------------------------------------------------------------------------------
def test_cache_is_passed_under_this_transformers_name(tiny_model: Path) -> None:
    """The KV-cache keyword is read from the model's signature, so the shared-prefix path works on every version
    in pyproject's range (``past_key_values`` up to 5.17 at least, ``cache`` later)."""
    import inspect

    backend = HFBackend(str(tiny_model), batch_size=2, device="cpu", dtype="fp32")
    assert cache_keyword(backend.model) in inspect.signature(backend.model.forward).parameters


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cached_prefix_scores_match_a_full_pass_in_each_dtype(tiny_model: Path, dtype: str) -> None:
    backend = HFBackend(str(tiny_model), batch_size=2, device="cpu", dtype=dtype)
    assert backend.model.dtype == devices.resolve_dtype(dtype, torch.device("cpu"))
    assert backend.precision == {"device": devices.describe(torch.device("cpu")), "dtype": dtype}
    requests = [LLRequest(PREFIX + q, c, prefix_key="p") for q in QUESTIONS for c in (" A", " Shakespeare")]
    results = backend.loglikelihood(requests)
    assert backend.stats["prefix_passes"] == 1  # the shared prefix went through the model once
    for request, got in zip(requests, results, strict=True):
        ctx, cont = backend.encode_pair(request.context, request.continuation)
        with torch.inference_mode():
            logits = backend.model(torch.tensor([ctx + cont])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        expected = sum(float(logprobs[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
        # bf16 rounds differently when the prefix and the suffix go through in separate passes
        assert got.logprob == pytest.approx(expected, abs=1e-3 if dtype == "fp32" else 0.1)


def test_cached_greedy_generation_equals_plain_generate(tiny_model: Path) -> None:
    """Generation reuses the prefix cache; a cache passed under a name the model ignores would change the text."""
    backend = HFBackend(str(tiny_model), batch_size=2, device="cpu", dtype="fp32")
    outputs = backend.generate([GenRequest(PREFIX + q, "p") for q in QUESTIONS], max_tokens=8)
    assert backend.stats["prefix_passes"] == 1
    tok = backend.tokenizer
    for question, (got,) in zip(QUESTIONS, outputs, strict=True):
        ids = tok(PREFIX + question, return_tensors="pt")
        plain = backend.model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=backend.pad_id)
        expected = tok.decode(plain[0, ids.input_ids.shape[1] :], skip_special_tokens=True)
        assert got == expected and got


def test_backend_and_answer_generation_go_to_the_gpu_when_there_is_one(
    tiny_model: Path, tmp_path: Path, fake_cuda: None
) -> None:
    """With a (faked) GPU, auto places the weights on cuda:0 in bf16: this CPU-only torch then refuses."""
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
        HFBackend(str(tiny_model))
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
        generate_answers_local(str(tiny_model), [("a", "hi")], tmp_path / "a.jsonl", model_name="tiny")
    assert not (tmp_path / "a.jsonl").exists()


def test_answer_generation_in_bf16_on_the_cpu(tiny_model: Path, tmp_path: Path) -> None:
    prompts = [("a", "Say hello."), ("b", "Name a colour, please, in one word.")]
    out = generate_answers_local(
        str(tiny_model), prompts, tmp_path / "answers.jsonl", model_name="tiny", max_new_tokens=6, device="cpu",
        dtype="bf16",
    )  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(r["model"] == "tiny" for r in rows)


# -- training ---------------------------------------------------------------------------------------------
def _data(tmp_path: Path, n: int = 24) -> Path:
    path = tmp_path / "conversations.jsonl"
    rows = [
        {"id": f"c{i}", "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                     {"role": "assistant", "content": f"The answer is {2 * i}. " * 3}]}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tiny_model: Path, data: Path, out: Path, **kw: object) -> TrainConfig:
    return TrainConfig(
        base=f"hf:{tiny_model}", data=str(data), out=str(out), block_size=64, batch_size=2, max_steps=3,
        learning_rate=1e-3, warmup_steps=0, device="cpu", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_save_policies_write_what_they_say(tiny_model: Path, tmp_path: Path) -> None:
    data = _data(tmp_path)
    none = train(_config(tiny_model, data, tmp_path / "none", save="none"))
    assert not (tmp_path / "none" / "model").exists() and not list((tmp_path / "none").glob("checkpoints/*"))
    assert none["results"]["steps"] == 3 and (tmp_path / "none" / "metrics.jsonl").is_file()
    train(_config(tiny_model, data, tmp_path / "final", save="final"))
    assert (tmp_path / "final" / "model" / "config.json").is_file()
    assert not list((tmp_path / "final").glob("checkpoints/checkpoint-*"))
    train(_config(tiny_model, data, tmp_path / "steps", save="steps", save_steps=2))
    checkpoints = sorted(p.name for p in (tmp_path / "steps" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-3"]
    assert (tmp_path / "steps" / "checkpoints" / "checkpoint-2" / "optimizer.pt").is_file()  # resumable
    assert (tmp_path / "steps" / "model" / "config.json").is_file()


def test_bf16_mixed_precision_with_gradient_checkpointing(tiny_model: Path, tmp_path: Path) -> None:
    """bf16 autocast on the CPU, activation checkpointing under this transformers' argument name."""
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "args"), use_cpu=True, **checkpointing_arguments(True))
    assert args.gradient_checkpointing or getattr(args, "activation_checkpointing", False)
    manifest = train(_config(tiny_model, _data(tmp_path), tmp_path / "run", dtype="bf16", gradient_checkpointing=True))
    assert manifest["results"]["precision"]["dtype"] == "bf16"
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len([x for x in lines if "loss" in x]) == 3 and all(x["loss"] > 0 for x in lines if "loss" in x)
    # Master weights stay fp32 in mixed precision.
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "float32"


def test_lora_loads_the_frozen_base_in_the_compute_dtype(tiny_model: Path, tmp_path: Path) -> None:
    from imitlab.train.sft_trainer import load_student

    config = _config(tiny_model, _data(tmp_path), tmp_path / "lora", lora=True, lora_r=4, dtype="bf16")
    model, _, _ = load_student(config, torch.bfloat16)
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    manifest = train(config.__class__(**{**config.__dict__, "gradient_checkpointing": True}))
    assert manifest["results"]["steps"] == 3


def test_fp16_training_on_the_cpu_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ImitlabError, match="fp16 needs a GPU"):
        train(_config(tiny_model, _data(tmp_path), tmp_path / "o", dtype="fp16"))
