"""GGUF -> plain HF checkpoint, done once and cached, for training and log-likelihood scoring.

transformers can load llama, gemma3 and qwen2 GGUFs (dequantized to fp32), but the loaded model keeps a
GGUF quantizer: ``save_pretrained`` then raises "not serializable" and Trainer refuses "purely quantized
models". Dropping the quantizer and its config gives an ordinary fp32 checkpoint with the same weights
(shared/MODELS.md; the agreement test in tests/test_models_real.py checks it against llama.cpp).
Loading GGUF takes 15-80 s, the saved copy 0.2-2.6 s, hence convert once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from imitlab.fileio import atomic_path

log = logging.getLogger(__name__)

CONVERSION_RECORD = "imitlab_conversion.json"


def gguf_to_hf(gguf: str | Path, dest: str | Path, *, source_sha256: str | None = None) -> Path:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, dest = Path(gguf), Path(dest)
    log.info("converting %s to an HF checkpoint (one time; 15-80 s)", gguf.name)
    with atomic_path(dest, is_dir=True) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {
            "source": gguf.name,
            "source_sha256": source_sha256,
            "dtype": "float32",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2))
    return dest
