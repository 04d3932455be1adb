"""A saved model (a transferred student, a zoo member) on the Hugging Face hub, in timm's layout:
`model.safetensors`, `config.json` (`models.hub_config`: what `timm.create_model("hf-hub:<repo>")`
and `timm.create_model("local-dir:<folder>")` read), anyteach's sidecar as `anyteach.json`, and a
model card `README.md` saying how the student was made: the method, the teachers and the data by
name, Δ against the original student and, where the transfer ran its no-teacher control, Δ beyond
that control with its paired test and the run's verdict.

Nothing from the user's file system leaves with the model: a path inside a reference
(`imagefolder:/home/me/photos`, `timm:resnet50@/data/w.safetensors`) is cut to its last part
(`imagefolder:photos`) in the card and in `anyteach.json`.

`stage_for_hub` writes these files into a folder (`anyteach push --dry-run` stops there);
`push_to_hub` stages them in a temporary folder and uploads them with `huggingface_hub`
(`create_repo` + `upload_folder`); the API object can be given, which is how the tests use a local
stand-in instead of the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import AnyteachError, RunFailed
from ..core.io import read_json, write_json, write_text
from .references import SIDECAR_FORMAT, hub_config, load_model

HUB_FILES = ("README.md", "anyteach.json", "config.json", "model.safetensors")
"""The files of a staged hub folder (what `push` uploads)."""

_PATH = re.compile(r"(?:(?<=^)|(?<=[\s@=:,;(\[]))(?:~|[A-Za-z]:)?[/\\](?![/\\])[^\s,;?&'\"()\[\]]*")
"""An absolute path inside a text: after the start, a space, `@`, `=`, `:` or a separator; `//` (a URL)
is not one."""


def public_text(text: str) -> str:
    """`text` with every absolute path in it cut to its last part: `imagefolder:/home/me/photos` ->
    `imagefolder:photos`, `timm:resnet10t@/data/w.safetensors?img_size=32` ->
    `timm:resnet10t@w.safetensors?img_size=32`."""
    return _PATH.sub(lambda m: re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], text)


def public(value: Any) -> Any:
    """A JSON value with `public_text` applied to every text in it (keys included)."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, Mapping):
        return {public_text(str(k)): public(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(v) for v in value]
    return value


def _weights_path(model: str | Path) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise AnyteachError(f"{model} is not a model saved by anyteach (a .safetensors file with its .json sidecar)")
    return path


def transfer_record(weights: Path, sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """How a saved model was made, for its card: the sidecar's `extra.transfer`, completed from the
    run directory it sits in (a run's `student.safetensors`: the names in `config.json`, the control
    and verdict in `final.json`) where the sidecar lacks them. Empty for a model not made by a transfer.
    """
    made = dict((sidecar.get("extra") or {}).get("transfer") or {})
    if not made:
        return made
    run_dir = weights.parent
    config = _read_optional(run_dir / "config.json")
    if isinstance(config, dict) and str(config.get("format", "")).startswith("anyteach-transfer"):
        made.setdefault("student_name", (config.get("student") or {}).get("name"))
        made.setdefault("teacher_names", [t.get("name") for t in config.get("teachers") or []])
        made.setdefault("data", (config.get("data") or {}).get("ref"))
        final = _read_optional(run_dir / "final.json")
        if isinstance(final, dict):
            for key in ("control", "verdict"):
                if key in final:
                    made.setdefault(key, final[key])
    return made


def _read_optional(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pp(value: Any) -> str:
    return "-" if value is None else f"{float(value):+.2f} pp"


def _p(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2g}"


def _control_rows(made: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The card's rows on the no-teacher control, and the paragraph after the table."""
    control = made.get("control")
    if not (made.get("teachers") or made.get("teacher_names")):
        return ["| no-teacher control | this model was trained without a teacher: it is one |"], []
    if not isinstance(control, Mapping):
        return (
            ["| no-teacher control | none was run |"],
            [
                "No no-teacher control was run with this transfer, so the Δ above is not a transfer claim: "
                "training the student without a teacher, on the same data for the same steps, can move it "
                "as much.",
                "",
            ],
        )
    rows = [f"| no-teacher control | `{control.get('method')}`: Δ {_pp(control.get('transfer_delta'))} |"]
    beyond = control.get("delta_beyond_control")
    if beyond is not None:
        rows.append(
            f"| Δ beyond the control | {_pp(beyond)} (paired test over the eval samples: "
            f"{control.get('samples_better')} better, {control.get('samples_worse')} worse than the control; "
            f"p = {_p(control.get('p_better'))} that it is better, {_p(control.get('p_worse'))} that it is worse) |"
        )
    added = control.get("teacher_added")
    if added is not None:
        rows.append(f"| the teacher added knowledge beyond the control | {'yes' if added else 'no'} |")
    return rows, []


def model_card(sidecar: Mapping[str, Any], repo_id: str, made: Mapping[str, Any] | None = None) -> str:
    """The `README.md` of a pushed model: hub metadata, how it was made, how to load it.

    Args:
        sidecar: the model's sidecar (`<model>.json`).
        repo_id: the hub repository, for the loading snippet.
        made: how it was made (`transfer_record`); default: the sidecar's `extra.transfer`.
    """
    sidecar = public(dict(sidecar))
    made = public(dict(made if made is not None else (sidecar.get("extra") or {}).get("transfer") or {}))
    config_arch = sidecar["architecture"].removeprefix("timm:")
    timm_arch = sidecar["architecture"].startswith("timm:")
    extra = sidecar.get("extra") or {}
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
    after: list[str] = []
    if made:
        names = [n for n in made.get("teacher_names") or [] if n]
        teachers = ", ".join(f"`{n}`" for n in names) or (
            f"{len(made.get('teachers') or [])} (their names were not recorded)" if made.get("teachers") else "none"
        )
        data = made.get("data") or made.get("data_name")
        lines += [
            f"This `{config_arch}` student was trained by knowledge transfer with "
            f"[anyteach](https://pypi.org/project/anyteach/): method `{made.get('method')}`"
            + (f", teachers {teachers}" if names else "")
            + (f", on `{data}`" if data else "")
            + ".",
            "",
            "| | |",
            "|---|---|",
            f"| method | `{made.get('method')}` |",
            f"| student before transfer | `{made.get('student_name') or made.get('student')}` |",
            f"| teachers | {teachers} |",
            f"| data | `{data}` |" if data else "| data | not recorded |",
        ]
        if extra.get("eval_acc") is not None:
            lines.append(f"| eval accuracy | {extra['eval_acc']:.2f}% |")
        if made.get("transfer_delta") is not None:
            lines.append(f"| Δ accuracy vs the original student | {_pp(made['transfer_delta'])} |")
        rows, after = _control_rows(made)
        lines += rows
    else:
        lines += [f"This `{config_arch}` classifier was saved by anyteach.", "", "| | |", "|---|---|"]
        if extra.get("data"):
            lines.append(f"| trained on | `{extra['data']}` |")
        if extra.get("eval_acc") is not None:
            lines.append(f"| eval accuracy | {extra['eval_acc']:.2f}% |")
    labels = sidecar.get("class_names") or []
    shown = ", ".join(labels[:20]) + (", …" if len(labels) > 20 else "")
    lines.append(f"| classes | {sidecar['num_classes']}{f' ({shown})' if labels else ''} |")
    size = (sidecar.get("preprocessing") or {}).get("input_size")
    if size:
        lines.append(f"| input size | {'×'.join(str(v) for v in size)} |")
    lines += [f"| parameters | {sidecar.get('num_params', 0):,} |", ""]
    if made.get("verdict"):
        lines += [f"**Verdict:** {made['verdict']}", ""]
    lines += after
    if timm_arch:
        lines += [
            "## Use",
            "",
            "```python",
            "import timm",
            "",
            f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True)',
            "config = timm.data.resolve_data_config({}, model=model)  # the input size it was trained at",
            "transform = timm.data.create_transform(**config)",
            "```",
            "",
        ]
        lines += [
            f"With anyteach, `hf-hub:{repo_id}` (or the downloaded folder) is a model reference: "
            f"`anyteach info hf-hub:{repo_id}`.",
            "",
        ]
    else:
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
    write_json(folder / "config.json", public(hub_config(classifier.info, classifier.net)))
    write_json(folder / "anyteach.json", public(sidecar))
    write_text(folder / "README.md", model_card(sidecar, repo_id, transfer_record(weights, sidecar)))
    return sorted(p.name for p in folder.iterdir())


def _check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise AnyteachError(f"bad hub repository {repo_id!r}: expected <user or organisation>/<name>")


def default_dry_run_folder(repo_id: str) -> Path:
    """Where `push --dry-run` writes when not told: `hub-<owner>--<name>` in the current directory."""
    return Path(f"hub-{repo_id.replace('/', '--')}")


def stage_push(model: str | Path, repo_id: str, out: str | Path | None = None) -> Path:
    """What `push_to_hub` would upload, written into a folder instead (no network): `anyteach push --dry-run`.

    Args:
        model: a model saved by anyteach.
        repo_id: `<user or organisation>/<name>` (it appears in the card's loading snippet).
        out: the folder (default `default_dry_run_folder`). An existing one is replaced only if it
            holds nothing but the files of an earlier dry run.

    Returns:
        The folder.

    Raises:
        AnyteachError: not a saved model, a bad repo id, or `out` holds other files.
    """
    _check_repo_id(repo_id)
    folder = Path(out).expanduser() if out is not None else default_dry_run_folder(repo_id)
    if folder.exists():
        if not folder.is_dir():
            raise AnyteachError(f"{folder} is a file; choose a new folder for the dry run (--out)")
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in HUB_FILES)
        if foreign:
            raise AnyteachError(
                f"{folder} holds other files than a dry run's (e.g. {foreign[0]}); choose a new folder (--out)"
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed dry run of this process id
    try:
        stage_for_hub(model, tmp, repo_id)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


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
    _check_repo_id(repo_id)
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
    if getattr(getattr(error, "response", None), "status_code", None):
        return False  # the hub answered: a refusal, not a network failure
    if isinstance(error, (ConnectionError, TimeoutError)):  # huggingface_hub's OfflineModeIsEnabled is one
        return True
    module = type(error).__module__.split(".")[0]
    return module in _NETWORK_LIBRARIES and any(
        word in type(error).__name__ for word in ("Connect", "Timeout", "Network", "Transport", "Proxy")
    )


__all__ = [
    "HUB_FILES",
    "default_dry_run_folder",
    "model_card",
    "public",
    "public_text",
    "push_to_hub",
    "stage_for_hub",
    "stage_push",
    "transfer_record",
]
