"""Pushing what imitlab makes to the Hugging Face hub: imitation sets (dataset repos) and students (model repos).

Every push is checked before any work starts (``check_push``): the repo id, offline mode, a token. Otherwise a
push that cannot happen would be found out only after the export or the training run. The hub calls are
huggingface_hub's and datasets' own; imitlab writes only the cards.
"""

from __future__ import annotations

import re
from pathlib import Path

from imitlab.errors import ImitlabError

_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


class HubPushError(ImitlabError):
    """A push to the hub cannot start or failed (the message says which and why)."""


def check_push(repo: str, what: str) -> None:
    """Raise before any work when ``repo`` is not OWNER/NAME, the hub is set offline, or no token is found."""
    import huggingface_hub
    from huggingface_hub import constants

    if not _REPO_ID.fullmatch(repo):
        raise HubPushError(f"--push-to-hub {repo!r}: expected a repo id OWNER/NAME")
    if constants.is_offline_mode():
        raise HubPushError(
            f"--push-to-hub {repo}: the hub is offline here (HF_HUB_OFFLINE is set), so {what} cannot be pushed; "
            "run without --push-to-hub, or unset HF_HUB_OFFLINE where the hub is reachable"
        )
    if huggingface_hub.get_token() is None:
        raise HubPushError(f"--push-to-hub {repo}: no Hugging Face token; run `hf auth login` or set $HF_TOKEN")


def push_dataset(folder: Path, repo: str, *, private: bool = False) -> str:
    """Push a datasets folder (save_to_disk) with its README.md card and manifest.json; return the repo URL.

    The card goes first: ``Dataset.push_to_hub`` then merges its own metadata (features, splits) into it."""
    import datasets
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo, repo_type="dataset", folder_path=str(folder),
            allow_patterns=["README.md", "manifest.json"], commit_message="imitlab: card and manifest",
        )  # fmt: skip
        loaded = datasets.load_from_disk(str(folder))
        loaded.push_to_hub(repo, private=private, commit_message="imitlab: data")
    except Exception as exc:  # network, auth, quota: one line naming the repo
        raise HubPushError(f"push of {folder} to {repo} failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    return str(url)


def push_model(folder: Path, repo: str, *, private: bool = False) -> str:
    """Push a model folder (weights, tokenizer, README.md card) as one commit; return the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, repo_type="model", folder_path=str(folder), commit_message="imitlab: student")
    except Exception as exc:
        raise HubPushError(f"push of {folder} to {repo} failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    return str(url)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
