"""A saved model (a transferred student, a zoo member) on the Hugging Face hub, in timm's layout:
`model.safetensors`, `config.json` (`models.hub_config`: what `timm.create_model("hf-hub:<repo>")`
reads), anyteach's sidecar as `anyteach.json`, and a model card `README.md` saying how the student
was made (method, teachers by content identity, data, Δ against the original student).

`push_to_hub` stages these files in a temporary folder and uploads them with `huggingface_hub`
(`create_repo` + `upload_folder`); the API object can be given, which is how the tests use a local
stand-in instead of the network.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..core.errors import AnyteachError, RunFailed
from ..core.io import read_json, write_json, write_text
from .references import SIDECAR_FORMAT, hub_config, load_model


def _weights_path(model: str | Path) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise AnyteachError(f"{model} is not a model saved by anyteach (a .safetensors file with its .json sidecar)")
    return path


def model_card(sidecar: dict[str, Any], repo_id: str) -> str:
    """The `README.md` of a pushed model: hub metadata, how it was made, how to load it."""
    config_arch = sidecar["architecture"].removeprefix("timm:")
    timm_arch = sidecar["architecture"].startswith("timm:")
    extra = sidecar.get("extra") or {}
    made = extra.get("transfer") or {}
    lines = [
        "---",
        f"library_name: {'timm' if timm_arch else 'anyteach'}",
        "tags:",
        "- image-classification" if timm_arch else "- classification",
        "- anyteach",
        "- knowledge-transfer",
        "---",
        "",
        f"# {sidecar['name']}",
        "",
    ]
    if made:
        teachers = ", ".join(made.get("teachers") or []) or "none"
        lines += [
            f"A `{config_arch}` student trained by knowledge transfer with "
            f"[anyteach](https://pypi.org/project/anyteach/) (method `{made.get('method')}`).",
            "",
            "| | |",
            "|---|---|",
            f"| method | `{made.get('method')}` |",
            f"| student before transfer | `{made.get('student')}` |",
            f"| teachers | `{teachers}` |",
            f"| data | `{made.get('data')}` |",
        ]
        if made.get("transfer_delta") is not None:
            lines.append(f"| Δ accuracy vs the original student | {made['transfer_delta']:+.2f} pp |")
    else:
        lines += [f"A `{config_arch}` classifier saved by anyteach.", "", "| | |", "|---|---|"]
    if extra.get("eval_acc") is not None:
        lines.append(f"| eval accuracy | {extra['eval_acc']:.2f}% |")
    lines += [f"| classes | {sidecar['num_classes']} |", f"| parameters | {sidecar.get('num_params', 0):,} |", ""]
    if timm_arch:
        lines += [
            "## Use",
            "",
            "```python",
            "import timm",
            "",
            f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True)',
            "```",
            "",
        ]
    lines += [
        "With anyteach: download the repository and load `model.safetensors` (its sidecar is `anyteach.json`).",
        "",
    ]
    return "\n".join(lines)


def stage_for_hub(model: str | Path, folder: Path, repo_id: str) -> list[str]:
    """Write the hub files of a saved model into `folder`; returns their names."""
    weights = _weights_path(model)
    sidecar = read_json(weights.with_suffix(".json"), "model sidecar")
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise AnyteachError(f"{weights.with_suffix('.json')} is not an anyteach model sidecar")
    classifier = load_model(weights)  # checks that the weights fit the sidecar before anything is uploaded
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / "model.safetensors")
    write_json(folder / "config.json", hub_config(classifier.info, classifier.net))
    write_json(folder / "anyteach.json", sidecar)
    write_text(folder / "README.md", model_card(sidecar, repo_id))
    return sorted(p.name for p in folder.iterdir())


def push_to_hub(
    model: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    api: Any = None,
    commit_message: str | None = None,
) -> str:
    """Upload a saved model with its `config.json` and model card to the Hugging Face hub.

    Args:
        model: a model saved by anyteach (a student's `student.safetensors`, a zoo member, a directory).
        repo_id: `<user or organisation>/<name>`; created if it does not exist.
        private: create the repository as private.
        token: a hub token (default: huggingface_hub's login or `HF_TOKEN`).
        api: an `huggingface_hub.HfApi` (default: a new one with `token`).
        commit_message: the commit's message.

    Returns:
        The repository's URL as the hub gives it.

    Raises:
        AnyteachError: not a saved model, a bad repo id, or the hub refused (offline, no token, no rights).
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise AnyteachError(f"bad hub repository {repo_id!r}: expected <user or organisation>/<name>")
    if api is None:
        try:
            from huggingface_hub import HfApi
        except ImportError as e:  # a dependency of timm: normally there
            raise AnyteachError("pushing needs the huggingface_hub package: pip install huggingface_hub") from e
        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="anyteach-push-") as tmp:
        files = stage_for_hub(model, Path(tmp), repo_id)
        name = json.loads((Path(tmp) / "anyteach.json").read_text())["name"]
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                repo_type="model",
                commit_message=commit_message or f"anyteach: {name} ({', '.join(files)})",
            )
        except Exception as e:  # noqa: BLE001 - sorted below: the network's failures and the hub's refusals
            if _unreachable(e):  # the input was valid: the hub could not be reached (exit status 1)
                raise RunFailed(
                    f"cannot reach the Hugging Face hub to push {repo_id} ({type(e).__name__}: "
                    f"{_first_line(e)}); check the network (and HF_HUB_OFFLINE, HF_ENDPOINT) and push again"
                ) from e
            if isinstance(e, (OSError, ValueError)):  # HfHubHTTPError (no token, no rights, a bad name) is an OSError
                raise AnyteachError(f"cannot push to the hub repository {repo_id}: {_first_line(e)}") from e
            raise
    return str(url)


_NETWORK_LIBRARIES = ("httpx", "httpx2", "httpcore", "requests", "urllib3")
"""The libraries huggingface_hub talks to the network through: their errors without an HTTP answer mean the
hub could not be reached."""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _unreachable(error: BaseException) -> bool:
    """The error says the hub could not be reached (no network, no name resolution, a timeout, offline mode),
    not that it answered with a refusal."""
    if getattr(error, "response", None) is not None and getattr(error.response, "status_code", None):
        return False  # the hub answered: a refusal, not a network failure
    if isinstance(error, (ConnectionError, TimeoutError)):  # huggingface_hub's OfflineModeIsEnabled is one
        return True
    module = type(error).__module__.split(".")[0]
    return module in _NETWORK_LIBRARIES and any(
        word in type(error).__name__ for word in ("Connect", "Timeout", "Network", "Transport", "Proxy")
    )


__all__ = ["model_card", "push_to_hub", "stage_for_hub"]
