"""``imitlab train --push-to-hub REPO``: the trained student (``RUN/model``) to a hub model repo, with a card.

LoRA runs are merged by default (``RUN/model`` is then a plain checkpoint); with ``--adapter-only`` the adapter
folder is pushed as peft saved it. The card is written to ``RUN/model/README.md`` from the run's manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text
from imitlab.hub import check_push, push_model


def check_train_push(repo: str, save: str) -> None:
    """Before training: a push needs weights, a reachable hub and a token."""
    if save == "none":
        raise ImitlabError("--push-to-hub needs the trained weights; --save none keeps none")
    check_push(repo, "the student")


def model_card(manifest: dict[str, Any], name: str) -> str:
    """The student's card: hub metadata and what its run manifest says (base, data, budget, losses, versions)."""
    from huggingface_hub import ModelCard, ModelCardData

    config = manifest.get("config", {})
    base = manifest.get("base", {}).get("spec", "")
    hub_base = base.removeprefix("hf:") if base.startswith("hf:") and not Path(base[3:]).exists() else None
    lora = bool(config.get("lora"))
    merged = config.get("merge_lora", True)
    method = f"LoRA r={config.get('lora_r')} ({'merged' if merged else 'adapter'})" if lora else "full fine-tuning"
    data = ModelCardData(
        library_name="peft" if lora and not merged else "transformers",
        base_model=hub_base, tags=["imitlab", "imitation", "sft"] + (["lora"] if lora else []),
        pipeline_tag="text-generation",
    )  # fmt: skip
    run_data = manifest.get("data") or {}
    data_manifest = run_data.get("manifest") or {}
    results = manifest.get("results", {})
    packing = manifest.get("packing", {})
    lines = [
        f"# {name}",
        "",
        f"An imitation model trained by imitlab (`imitlab train`): **{base}** fine-tuned on the answers of "
        f"**{data_manifest.get('teacher') or 'a teacher (not recorded)'}**, with the loss on the teacher's tokens "
        "only.",
        "",
        "## Training (from the run manifest)",
        "",
        f"- data: `{run_data.get('path')}` (sha256 `{str(run_data.get('sha256'))[:16]}...`), "
        f"{packing.get('conversations')} conversations, {packing.get('tokens')} tokens "
        f"({packing.get('loss_tokens')} with loss)",
        f"- token budget: {config.get('tokens') or 'all of the data'}; steps: {results.get('steps')}; "
        f"block {config.get('block_size')}, batch {config.get('batch_size')} x {manifest.get('processes', 1)} "
        f"process(es), lr {config.get('learning_rate')}",
        f"- {method}",
    ]
    for key in ("train_loss", "eval_loss_before", "eval_loss_after"):
        if key in results:
            lines.append(f"- {key}: {results[key]:.4f}")
    versions = manifest.get("versions", {})
    lines += [
        f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
        "",
        "Imitation copies a teacher's style more readily than its capabilities (Gudibande et al., 2023): measure "
        "this model on targeted benchmarks (`imitlab eval`) before trusting it. The teacher's terms apply to its "
        "outputs.",
        "",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def push_student(run: str | Path, manifest: dict[str, Any], repo: str, *, private: bool = False) -> str:
    """Write ``RUN/model/README.md`` and push ``RUN/model``; return the repo URL."""
    folder = Path(run) / "model"
    if not folder.is_dir():
        raise ImitlabError(f"--push-to-hub: {folder} does not exist (the run saved no model)")
    atomic_write_text(folder / "README.md", model_card(manifest, repo.split("/")[-1]))
    return push_model(folder, repo, private=private)
