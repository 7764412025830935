"""One conformance suite for every Model: the HF backend (fp32 weights in this process) and the API backend (the
same model's Q4_1 GGUF behind a real llama.cpp server) pass the same tests, and agree with each other.

Log-likelihood agreement: the HF checkpoint is converted from the very GGUF the server runs (dequantized to fp32),
so both compute with the same weight values; they differ only in arithmetic (llama.cpp quantizes activations to
8 bits in its quantized matmuls, and sums in another order). Measured over the 21 (context, one-token continuation)
pairs below that the server scores (the rest fall outside its top 20): |difference| at most 0.28 nats, mean 0.066;
larger for less likely tokens. The tolerance, 0.35 nats, leaves a quarter for other thread counts or builds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from imitlab.evals.hf_backend import HFModel
from imitlab.models.api_model import APIModel, open_model
from imitlab.models.base import GenRequest, LLRequest, Model, UnsupportedRequest
from imitlab.models.engine import EngineSettings
from imitlab.models.packaged import PulledModel
from imitlab.models.server import LlamaServer

pytestmark = pytest.mark.real

NAME = "smollm2-135m-instruct"
LL_TOLERANCE = 0.35  # nats; see the module docstring
CONTEXTS = [
    "The capital of France is", "Question: What is 2+2?\nAnswer:", "The first letter of the alphabet is",
    "def add(a, b):\n    return", "Once upon a time, there was a", "The color of the sky is", "I like to eat",
    "Water boils at 100 degrees", "The largest planet in our solar system is", "Q: Who wrote Hamlet?\nA:",
]  # fmt: skip
CONTINUATIONS = [" Paris", " the", " a", " A", " B", " blue", " Jupiter", " William", " Celsius", " little",
                 " apples", " and", " is", " of"]  # fmt: skip
SETTINGS = EngineSettings(concurrency=2, use_cache=False, progress=False)


@pytest.fixture(scope="module")
def hf_model(smollm2: PulledModel) -> Iterator[HFModel]:
    assert smollm2.hf is not None
    model = HFModel(str(smollm2.hf), spec=NAME, name=NAME, batch_size=4, dtype="fp32")
    yield model
    model.close()


@pytest.fixture(scope="module")
def api_model(smollm2_server: LlamaServer) -> Iterator[APIModel]:
    with open_model(f"openai:{NAME}", base_url=smollm2_server.base_url, settings=SETTINGS) as model:
        yield model


@pytest.fixture(params=["hf", "api"])
def model(request: pytest.FixtureRequest) -> Model:
    return request.getfixturevalue(f"{request.param}_model")


def test_is_a_model_with_a_port_free_identity(model: Model) -> None:
    assert isinstance(model, Model)
    info = model.describe()
    assert info["spec"] and info["identity"] == model.identity and info["backend"] in ("hf", "api")
    assert not re.search(r":\d{2,5}(/|$)", model.identity), model.identity  # no port in it


def test_chat_answers_every_conversation(model: Model) -> None:
    conversations = [
        [{"role": "user", "content": "Say hello."}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    ]
    answers = model.chat(conversations, max_tokens=16, temperature=0.0)
    assert len(answers) == 2
    for answer in answers:
        assert not isinstance(answer, Exception), answer
        assert answer.text.strip() and answer.prompt_tokens and answer.prompt_tokens > 5
        assert answer.completion_tokens is not None and 0 < answer.completion_tokens <= 17  # 16, re-encoded on hf


def test_generate_stops_before_the_first_stop_string(model: Model) -> None:
    prompt = "Count: 1, 2, 3,"
    free = model.generate([prompt], max_tokens=20, mode="completions")[0][0]
    assert len(free) > 8, free
    stop = free[len(free) // 2 : len(free) // 2 + 2]  # a piece from the middle of what it says unstopped
    expected = free[: free.find(stop)]
    # More than the four stop strings the OpenAI API takes: the rest are applied on our side.
    stops = ["@@1", "@@2", "@@3", "@@4", stop]
    out = model.generate([prompt, GenRequest(prompt)], stop=stops, max_tokens=20, n=2, mode="completions")
    assert out == [[expected, expected], [expected, expected]], (free, stop)


def test_count_tokens_is_the_same_tokenizer(hf_model: HFModel, api_model: APIModel) -> None:
    texts = ["Hello world, this is a test.", "def f(x):\n    return x ** 2\n", "naïve café 東京 😀", "12 + 678", ""]
    counts = hf_model.count_tokens(texts)
    assert counts == api_model.count_tokens(texts)
    assert counts[-1] == 0 and all(c > 0 for c in counts[:-1])


def test_loglikelihood_agrees_between_backends(hf_model: HFModel, api_model: APIModel) -> None:
    requests = [LLRequest(c, k) for c in CONTEXTS for k in CONTINUATIONS]
    local = hf_model.loglikelihood(requests)
    compared = []
    for request, ours in zip(requests, local, strict=True):
        try:
            (served,) = api_model.loglikelihood([request])
        except UnsupportedRequest as exc:  # not among the server's top 20: it cannot say, and says so
            assert "top 20" in str(exc) or "tokens" in str(exc)
            continue
        assert served.n_tokens == ours.n_tokens == 1
        assert abs(served.logprob - ours.logprob) <= LL_TOLERANCE, (request, ours, served)
        assert served.is_greedy == ours.is_greedy, (request, ours, served)
        compared.append(abs(served.logprob - ours.logprob))
    assert len(compared) >= 18, compared  # 21 when measured: the agreement is checked on real pairs


def test_a_multi_token_continuation_is_exact_locally_and_refused_by_the_api(
    hf_model: HFModel, api_model: APIModel
) -> None:
    request = LLRequest("Question: What is 2+2?\nAnswer:", " 4")  # " " and "4": two tokens
    assert hf_model.loglikelihood([request])[0].n_tokens == 2
    with pytest.raises(UnsupportedRequest, match="2 tokens"):
        api_model.loglikelihood([request])


def test_identity_is_stable_across_server_starts() -> None:
    with open_model(NAME, settings=SETTINGS) as first, open_model(NAME, settings=SETTINGS) as second:
        assert first.engine.base_url != second.engine.base_url  # two servers up at once: two ports
        assert first.identity == second.identity and first.identity.startswith(f"packaged:{NAME}:")
        urls = (first.engine.base_url, second.engine.base_url)
        with open_model(f"openai:{NAME}", base_url=urls[0], settings=SETTINGS) as a:
            with open_model(f"openai:{NAME}", base_url=urls[1], settings=SETTINGS) as b:
                assert a.identity == b.identity == f"openai:{NAME}@127.0.0.1/v1"
