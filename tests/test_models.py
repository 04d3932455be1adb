"""Model references: every kind resolves, unsafe or broken files are refused with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from anyteach import AnyteachError, build_classifier, load_model, save_model, timm_classifier
from anyteach.models.references import read_weights, timm_family

TIMM_TINY = "test_vit"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anyteach", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_saved_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("cnn1d", name="c", channels=8, depth=3, batchnorm=True)
    path = save_model(model, tmp_path / "c.safetensors")
    loaded = load_model(str(path))
    x = torch.randn(5, 40)
    assert torch.equal(loaded(x), model.eval()(x))
    assert loaded.info.family == "cnn" and loaded.info.num_classes == 10
    assert loaded.info.num_params == sum(p.numel() for p in model.parameters())
    assert loaded.info.identity  # content identity for the predictions cache
    # a directory holding model.safetensors + model.json is a reference too
    save_model(model, tmp_path / "run")
    assert torch.equal(load_model(str(tmp_path / "run"))(x), loaded(x))


def test_zoo_reference(tiny_zoo):
    model = load_model(tiny_zoo["mlp"])
    assert model.info.family == "mlp"
    assert 0 < model.info.extra["eval_acc"] <= 100


def test_timm_local_weights_with_own_preprocessing(tmp_path):
    torch.manual_seed(0)
    ref_model = timm_classifier(TIMM_TINY, num_classes=7)
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref_model.net.state_dict().items()}, str(weights))
    model = load_model(f"timm:{TIMM_TINY}@{weights}")
    assert model.num_classes == 7  # read from the classifier weights
    assert model.info.family == "transformer"
    p = model.info.preprocessing
    assert p.mean is not None and p.input_size == tuple(ref_model.info.preprocessing.input_size)
    x = torch.rand(2, 3, *p.input_size[1:])
    assert torch.allclose(model(x), ref_model(x))
    # a plain state dict saved by torch.save loads too
    plain = tmp_path / "w.pth"
    torch.save(ref_model.net.state_dict(), plain)
    assert torch.allclose(load_model(f"timm:{TIMM_TINY}@{plain}")(x), ref_model(x))


def test_timm_pretrained_from_offline_hub_cache(tmp_path):
    """`timm:<name>` goes through the real timm/Hugging Face path, served from a local cache."""
    torch.manual_seed(1)
    net = timm_classifier(TIMM_TINY).net
    repo = tmp_path / "hub" / "models--timm--test_vit.r160_in1k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(snap / "model.safetensors"))
    code = (
        "import torch, anyteach; m = anyteach.load_model('timm:test_vit.r160_in1k'); "
        "sd = m.net.state_dict(); print(m.num_classes, m.info.family, float(sum(v.float().sum() for v in sd.values())))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    n, family, total = out.stdout.split()
    assert (int(n), family) == (1000, "transformer")
    assert float(total) == pytest.approx(float(sum(v.float().sum() for v in net.state_dict().values())), rel=1e-5)


class _Exploit:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Exploit(str(marker))}, bad)
    with pytest.raises(AnyteachError, match="pickled Python objects"):
        read_weights(bad)
    assert not marker.exists()
    result = run_cli("info", f"timm:{TIMM_TINY}@{bad}")
    assert result.returncode == 2 and not marker.exists()
    assert "refusing to load" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "make_ref, message",
    [
        (lambda p: "timm:no_such_model_xyz", "unknown timm model"),
        (lambda p: f"timm:{TIMM_TINY}@{p / 'missing.safetensors'}", "not found"),
        (lambda p: str(p / "missing.safetensors"), "not found"),
        (lambda p: "something-else", "unknown model reference"),
        (lambda p: "zoo:nozoo/x", "unknown zoo"),
        (lambda p: "zoo:mnist1d/not_a_member", "has no model"),
    ],
)
def test_bad_references_give_one_clear_line(tmp_path, make_ref, message):
    ref = make_ref(tmp_path)
    with pytest.raises(AnyteachError, match=message):
        load_model(ref)
    result = run_cli("info", ref)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0].replace("\n", " ")
    assert "Traceback" not in result.stderr


def test_corrupted_and_misfitting_weights(tmp_path):
    model = build_classifier("mlp", width=16, depth=1)
    path = save_model(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnyteachError, match="corrupted"):
        load_model(str(path))
    # weights of another architecture
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(other))
    with pytest.raises(AnyteachError, match="do not fit"):
        load_model(f"timm:{TIMM_TINY}@{other}")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weights file at all")
    with pytest.raises(AnyteachError, match="corrupted"):
        load_model(f"timm:{TIMM_TINY}@{garbage}")


def test_class_count_mismatch_is_a_clear_error(tmp_path, tiny_data):
    model = timm_classifier(TIMM_TINY, num_classes=7)
    path = save_model(model, tmp_path / "vit7")
    from anyteach import predict

    with pytest.raises(AnyteachError, match="7 classes but dataset"):
        predict(str(path), tiny_data)


def test_debug_flag_shows_traceback():
    result = run_cli("--debug", "info", "timm:no_such_model_xyz")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_timm_family_names():
    assert timm_family("vit_base_patch16_224") == "transformer"
    assert timm_family("mixer_b16_224") == "mlp"
    assert timm_family("convnext_tiny") == "cnn"
    assert timm_family("resnet50") == "cnn"
