"""Devices (issue 16, section 1): ``--device``/``--threads`` resolution, the model and the SAE
placed where asked, the record of where numbers were computed, and a meta-test that the engine,
capture and SAE code make no tensor on a hard-coded device. No GPU here: CUDA's presence is
faked for resolution, and PyTorch's ``meta`` device stands in for "another device" where moving
(not running) is what is tested."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from steerlab import devices, provenance
from steerlab.cli import get_cli
from steerlab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _fake_cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_is_the_cpu_without_cuda_and_cuda_0_with_it(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    assert devices.resolve("auto") == devices.resolve(None) == torch.device("cpu")
    _fake_cuda(monkeypatch, 2)
    assert devices.resolve("auto") == torch.device("cuda", 0)
    assert devices.resolve("cuda:1") == torch.device("cuda", 1)
    assert devices.resolve(" CUDA ") == torch.device("cuda", 0)


def test_an_unavailable_device_is_refused_naming_it_never_a_cpu_fallback(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    with pytest.raises(ConfigError) as info:
        devices.resolve("cuda")
    assert "device 'cuda' is not available" in str(info.value) and "use device 'cpu'" in str(info.value)
    assert info.value.parameters == ("device",)
    _fake_cuda(monkeypatch, 2)
    with pytest.raises(ConfigError, match=r"'cuda:2' is not available: torch sees 2 CUDA GPU\(s\)"):
        devices.resolve("cuda:2")
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'"):
        devices.resolve("tpu")
    with pytest.raises(ConfigError, match="got int 3"):
        devices.resolve(3)
    assert devices.resolve(torch.device("cpu")) == torch.device("cpu")


def test_threads_are_set_and_checked():
    before = torch.get_num_threads()
    try:
        assert devices.set_threads(1) == 1 == torch.get_num_threads()
        assert devices.set_threads(None) == 1  # None leaves torch's choice as it is
        with pytest.raises(ConfigError, match="threads must be"):
            devices.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_the_cli_refuses_cuda_on_a_machine_without_it_in_one_line(tmp_path, monkeypatch):
    _fake_cuda(monkeypatch, 0)
    out = tmp_path / "dict"
    result = CliRunner().invoke(
        get_cli(),
        ["learn", "features", "-l", "first_conv", "--data", "synth:1", "-o", str(out), "--device", "cuda"],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --device 'cuda' is not available"), result.output
    assert "use --device 'cpu'" in lines[0] and not out.exists()


def test_the_recipes_take_a_device_and_say_where_they_ran(monkeypatch):
    """eval samplecnn and eval codec (once CPU-only) run on the device asked and record it; an
    unavailable one is refused by the shared check, naming it."""
    for args in (["eval", "samplecnn", "--clips", "4"], ["eval", "codec", "--clips", "2"]):
        result = CliRunner().invoke(get_cli(), [*args, "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        doc = json.JSONDecoder().raw_decode(result.output[result.output.index("{") :])[0]  # warnings may follow
        assert doc["compute"]["device"] == "cpu"
    _fake_cuda(monkeypatch, 0)
    result = CliRunner().invoke(get_cli(), ["train", "tokenlm", "-o", "x", "--device", "cuda"])
    assert result.exit_code == 1 and "--device 'cuda' is not available" in result.output


def test_load_model_puts_every_weight_where_asked_and_notes_the_request(monkeypatch):
    import steerlab

    model = steerlab.load_model(device="cpu")
    assert devices.of(model) == torch.device("cpu") and model.device_requested == "cpu"
    # "another device": meta holds shapes only, enough to show every parameter and buffer moved
    monkeypatch.setattr(devices, "resolve", lambda d: torch.device("meta"))
    moved = steerlab.load_model(device="elsewhere")
    tensors = [*moved.parameters(), *moved.buffers()]
    assert tensors and {t.device.type for t in tensors} == {"meta"}
    assert moved.device_requested == "elsewhere"


def test_place_moves_a_model_and_none_leaves_it(monkeypatch):
    import steerlab

    model = steerlab.load_model(device="cpu")
    assert devices.place(model, None) == torch.device("cpu")
    monkeypatch.setattr(devices, "resolve", lambda d: torch.device("meta"))
    assert devices.place(model, "x") == torch.device("meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_train_sae_moves_every_batch_to_its_device_and_returns_the_sae_on_the_cpu(monkeypatch):
    from steerlab.sae import SAEConfig, train_sae

    x = torch.randn(600, 8, generator=torch.Generator().manual_seed(0))
    cfg = SAEConfig(width=8, size=16, k=2, epochs=2, batch_size=100, seed=0)
    moves: list[torch.device] = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, torch.device):
            moves.append(target)
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    sae, metrics = train_sae(x, cfg, device=torch.device("cpu"))
    assert moves.count(torch.device("cpu")) >= metrics["steps"]  # each training batch goes to the device
    assert metrics["device"] == "cpu"
    assert {p.device.type for p in sae.parameters()} == {"cpu"}
    monkeypatch.undo()
    again, _ = train_sae(x, cfg, device="cpu")
    plain, _ = train_sae(x, cfg)  # auto = the CPU here: the same SAE, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), plain.state_dict().values()))


def test_intervene_and_capture_take_a_device_and_records_say_where(tmp_path):
    import steerlab

    model = steerlab.load_model(device="auto")
    layer = steerlab.layers(model).get("first_conv")
    wave = np.sin(2 * np.pi * 440 * np.arange(12_000) / model.sample_rate).astype(np.float32)[None] * 0.3
    acts = steerlab.capture_activations(model, [wave], layer.name, device="cpu")
    assert isinstance(acts[0], np.ndarray) and acts[0].shape == (layer.channels, layer.frames_for(12_000))
    spec = steerlab.InterventionSpec(layer=layer.name, direction=steerlab.channel_direction(3, layer))
    result = steerlab.intervene(model, [wave], spec, device="cpu")[0]
    assert isinstance(result.patched, np.ndarray)
    rec = provenance.record(device=model)["compute"]
    assert rec["device"] == "cpu" and rec["requested"] == "auto" and rec["dtype"] == "float32"
    assert rec["autocast"] is None and rec["autocast_reason"] and rec["torch_threads"] == torch.get_num_threads()
    bare = provenance.record()["compute"]
    assert bare["device"] == "cpu" and bare["requested"] is None and bare["requested_reason"]


# -- no tensor made on a hard-coded device ---------------------------------------------------------

#: torch factories that make a new tensor on a device of their own (``*_like`` follow their input)
FACTORIES = {"zeros", "ones", "full", "empty", "tensor", "arange", "rand", "randn", "randint", "randperm"}
FACTORIES |= {"linspace", "eye", "as_tensor", "from_numpy"}
#: modules whose tensors must follow the model's (or the SAE's) device
CHECKED = ("engine.py", "tracing.py", "capture.py", "sae.py", "running.py", "learning.py", "devices.py", "fidelity.py")
#: the training and evaluation loops of the built-in recipes (``eval codec``, ``eval samplecnn``,
#: ``train samplecnn``, ``train tokenlm``)
CHECKED += (
    "builtins/encodec/evaluation.py",
    "builtins/samplecnn/train.py",
    "builtins/samplecnn/evaluation.py",
    "builtins/tokenlm/train.py",
)
#: (module, function) -> (how many of its factory calls make CPU tensors on purpose, why)
CPU_BY_DESIGN = {
    ("engine.py", "_direction_tensor"): (1, "the direction is moved to each activation's device in _edit"),
    ("engine.py", "_wave"): (1, "inputs are CPU tensors; tracing._batch moves each batch to the model"),
    ("capture.py", "capture_activations"): (1, "inputs are CPU tensors; tracing._batch moves each batch"),
    ("capture.py", "stream_vectors"): (2, "captured vectors come back to the CPU (steerlab.tracing.capture)"),
    ("capture.py", "run_batch"): (1, "the subsampling draw uses the CPU generator, on CPU vectors"),
    ("capture.py", "write_shards"): (1, "shards are written from CPU vectors"),
    ("sae.py", "_stats_hashing"): (2, "the statistics pass sums CPU blocks in float64"),
    ("sae.py", "evaluate"): (2, "evaluation sums on the CPU in float64 (outputs are brought back)"),
    ("sae.py", "train_sae"): (1, "the centre is a CPU statistic, copied into the SAE's buffer with copy_"),
    ("sae.py", "__init__"): (7, "initialised on the CPU with the CPU generator (the same on every device), then moved"),
    ("sae.py", "_check"): (1, "training data is held on the CPU; each batch is moved in train_sae"),
    ("sae.py", "batches"): (4, "shuffles draw from the CPU generator over CPU data, gathered into one CPU buffer"),
    ("sae.py", "eval_sample"): (2, "row indices into the CPU-held data, drawn by their own CPU generator"),
    ("fidelity.py", "splice_fidelity"): (1, "inputs are CPU tensors; tracing._batch moves each batch to the model"),
    ("builtins/encodec/evaluation.py", "folder_windows"): (1, "windows come back on the CPU; fidelity() moves them"),
    ("builtins/samplecnn/evaluation.py", "confusion"): (1, "counts of CPU predictions (_predict brings them back)"),
    ("builtins/samplecnn/evaluation.py", "evaluate_instruments"): (1, "counts of CPU predictions, as in confusion"),
}


def _factory_calls(source: str):
    """(function, line, factory) of every ``torch.<factory>(...)`` call without ``device=``."""
    tree = ast.parse(source)
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            f = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and f.value.id == "torch"
                and f.attr in FACTORIES
                and "device" not in {k.arg for k in node.keywords}
            ):
                yield fn.name, node.lineno, f.attr


def device_problems(files: dict[str, str]) -> list[str]:
    problems = []
    for name, source in files.items():
        calls: dict[str, list[str]] = {}
        for fn, line, factory in _factory_calls(source):
            calls.setdefault(fn, []).append(f"{name}:{line} {fn}: torch.{factory} without device=")
        for fn, found in calls.items():
            allowed = CPU_BY_DESIGN.get((name, fn), (0, ""))[0]
            if len(found) > allowed:  # one more than the documented CPU tensors: a tensor left behind
                problems += found if allowed == 0 else [f"{found[0]} (and {len(found) - allowed} more than allowed)"]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
                problems.append(f"{name}:{node.lineno}: .cuda()")  # torch.cuda.* queries are attributes, not calls
            if isinstance(node, ast.keyword) and node.arg == "device" and isinstance(node.value, ast.Constant):
                if node.value.value not in (None,):
                    problems.append(f"{name}:{node.lineno}: device={node.value.value!r} hard-coded")
    return problems


def test_engine_capture_and_sae_make_no_tensor_on_a_hard_coded_device():
    files = {name: (ROOT / "steerlab" / name).read_text() for name in CHECKED}
    assert device_problems(files) == []
    present = {(n, fn) for n, s in files.items() for fn, _, _ in _factory_calls(s)}
    assert set(CPU_BY_DESIGN) <= present, f"stale entries: {set(CPU_BY_DESIGN) - present}"


def test_no_library_module_calls_cuda_directly():
    offenders = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p in (ROOT / "steerlab").rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "cuda" and not n.args
    ]
    assert offenders == []


def test_the_checker_catches_a_factory_without_device_and_a_cuda_call():
    bad = (
        "import torch\n"
        "def step(x):\n"
        "    m = torch.zeros(3)\n"
        "    y = x.cuda()\n"
        "    z = torch.ones(2, device='cuda')\n"
        "    return torch.ones(2, device=x.device)\n"
    )
    problems = device_problems({"engine.py": bad})
    assert len(problems) == 3, problems
    assert "torch.zeros without device=" in problems[0]
    assert any(".cuda" in p for p in problems) and any("hard-coded" in p for p in problems)


def test_gpu_check_runs_its_cpu_half_and_says_there_is_no_cuda(tmp_path):
    out = tmp_path / "out"
    env_run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert env_run.returncode == 0, env_run.stderr[-2000:]
    doc = json.loads((out / "gpu_check.json").read_text())
    if torch.cuda.is_available():  # (a machine with a GPU runs both halves)
        assert doc["cuda"] is True and all(r["ok"] for r in doc["parity"].values())
        return
    assert doc["cuda"] is False and "no CUDA" in env_run.stdout
    cpu = doc["cpu"]
    assert cpu["device"] == "cpu" and cpu["compute"]["device"] == "cpu" and cpu["intervene_items"] == 4
    assert cpu["intervene_items_per_s"] > 0 and cpu["sae_vectors_per_s"] > 0
    assert 0 < cpu["sae_metrics"]["explained_variance"] <= 1 and cpu["sae_metrics"]["device"] == "cpu"


def test_more_threads_than_cores_are_accepted_with_one_warning_and_recorded(monkeypatch):
    """`--threads 1000` on 2 cores was accepted silently: it still is accepted (torch allows
    oversubscription), with an OversubscribedThreadsWarning and ``threads_warning`` in the record."""
    import os
    import warnings

    from steerlab.errors import OversubscribedThreadsWarning

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert devices.set_threads(2) == 2  # as many as the cores: no warning, no key
            assert not caught and "threads_warning" not in devices.record()
            assert devices.set_threads(3) == 3 == torch.get_num_threads()
        said = "threads=3 is more than the 2 CPU cores of this machine (os.cpu_count())"
        assert [w.category for w in caught] == [OversubscribedThreadsWarning]
        assert str(caught[0].message).startswith(said) and "\n" not in str(caught[0].message)
        assert devices.record()["threads_warning"].startswith(said)
    finally:
        torch.set_num_threads(before)


def test_the_cli_prints_the_oversubscription_as_one_warning_line(monkeypatch, tmp_path):
    import os

    from click.testing import CliRunner

    from steerlab.cli import get_cli

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    try:
        res = CliRunner().invoke(get_cli(), ["capture", "--threads", "2", "--help"])
        assert res.exit_code == 0  # --help: nothing applied
        args = ["steerability", "-m", "nope", "--threads", "2", "-o", str(tmp_path / "out")]
        res = CliRunner().invoke(get_cli(), args)  # threads are applied before the model name fails
        warning = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
        assert warning == [
            "warning: threads=2 is more than the 1 CPU core of this machine (os.cpu_count()): torch runs "
            "them oversubscribed, which is usually slower than 1"
        ], res.output
    finally:
        torch.set_num_threads(before)
