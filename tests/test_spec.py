from pathlib import Path

import pytest

from imitlab.errors import ModelSpecError, UnknownModelError
from imitlab.models.spec import ModelSpec, parse_spec


def test_packaged_names_parse() -> None:
    assert parse_spec("smollm2-135m-instruct") == ModelSpec("packaged", "smollm2-135m-instruct")
    assert str(parse_spec("gemma3-270m")) == "gemma3-270m"


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError) as info:
        parse_spec("smollm3-9b")
    message = str(info.value)
    for name in ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        assert name in message
    assert "hf:" in message and "openai:" in message


def test_openai_spec_takes_base_url_from_argument_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMITLAB_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelSpecError, match="base URL"):
        parse_spec("openai:gpt-4o-mini")
    assert parse_spec("openai:gpt-4o-mini", base_url="http://x/v1").base_url == "http://x/v1"
    monkeypatch.setenv("IMITLAB_BASE_URL", "http://127.0.0.1:9/v1")
    spec = parse_spec("openai:gpt-4o-mini")
    assert (spec.kind, spec.target, spec.base_url) == ("openai", "gpt-4o-mini", "http://127.0.0.1:9/v1")


def test_hf_and_gguf_specs(tmp_path: Path) -> None:
    assert parse_spec("hf:HuggingFaceTB/SmolLM2-135M") == ModelSpec("hf", "HuggingFaceTB/SmolLM2-135M")
    assert parse_spec(str(tmp_path)) == ModelSpec("hf", str(tmp_path))  # a bare directory is hf:
    with pytest.raises(ModelSpecError, match="not found"):
        parse_spec(f"gguf:{tmp_path}/missing.gguf")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert parse_spec(str(gguf)) == ModelSpec("gguf", str(gguf))
    assert parse_spec(f"gguf:{gguf}").name == "m.gguf"


@pytest.mark.parametrize("bad", ["", "openai:", "hf:"])
def test_empty_specs_are_errors(bad: str) -> None:
    with pytest.raises(ModelSpecError):
        parse_spec(bad, base_url="http://x/v1")
