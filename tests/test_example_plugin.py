"""The worked example of docs/plugins.md, installed for real.

``examples/steerlab_example_plugin`` is built into a wheel and pip-installed into a
temporary folder; the real ``steerlab`` command, run in a subprocess with that folder
on ``PYTHONPATH``, must discover it through its entry point and run ``layers``,
``learn`` and ``intervene`` on its model. Nothing is downloaded.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "steerlab_example_plugin"
STEERLAB = Path(sys.executable).parent / "steerlab"
SR = 16_000


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def _build_wheel(src: Path, out: Path) -> Path:
    """The example's wheel, built offline from its pyproject.toml.

    setuptools writes the metadata (``egg_info`` reads ``[project]`` and its entry
    points); the wheel is zipped here because ``bdist_wheel`` needs the ``wheel``
    package under setuptools < 70.1, which the dev venv does not have, and
    ``pip wheel`` must not download it."""
    meta = out / "meta"
    meta.mkdir()
    subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info", "--egg-base", str(meta)],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (egg,) = meta.glob("*.egg-info")
    info = (egg / "PKG-INFO").read_text()
    requires = [line for line in (egg / "requires.txt").read_text().splitlines() if line.strip()]
    name = info.split("Name: ")[1].split("\n")[0].replace("-", "_")
    version = info.split("Version: ")[1].split("\n")[0]
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{pkg}/{p.relative_to(src / pkg).as_posix()}": p.read_bytes()
        for pkg in (egg / "top_level.txt").read_text().split()
        for p in sorted((src / pkg).rglob("*.py"))
    }
    files[f"{dist_info}/METADATA"] = (
        info.rstrip("\n") + "\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: steerlab-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist_info}/entry_points.txt"] = (egg / "entry_points.txt").read_bytes()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in files.items():
        writer.writerow(_record_line(arcname, data))
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
    return wheel


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder the example plugin is pip-installed into (not the dev venv)."""
    work = tmp_path_factory.mktemp("example_plugin")
    src = work / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    wheel = _build_wheel(src, work)
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _steerlab(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    from steerlab.plugins import BLOCK_ENV, DEFAULT_PLUGINS, ESSENTIAL_PLUGINS

    # the example needs only the core and the essential built-ins (which cannot be blocked);
    # keeping the other built-in models out isolates it from them and speeds up each command
    others = [name for name in DEFAULT_PLUGINS if name not in ESSENTIAL_PLUGINS]
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", BLOCK_ENV: ",".join(others)}
    result = subprocess.run([str(STEERLAB), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_the_installed_distribution_declares_the_entry_point(site):
    (dist,) = importlib.metadata.distributions(path=[str(site)])
    assert dist.metadata["Name"] == "steerlab-example-plugin"
    [ep] = [ep for ep in dist.entry_points if ep.group == "steerlab"]
    assert (ep.name, ep.value) == ("example", "steerlab_example_plugin")
    assert (site / "steerlab_example_plugin" / "__init__.py").read_bytes() == (
        EXAMPLE / "steerlab_example_plugin" / "__init__.py"
    ).read_bytes()
    # the worked example keeps its promise of a model in about 60 lines
    assert len((EXAMPLE / "steerlab_example_plugin" / "__init__.py").read_text().splitlines()) <= 65


def _expected_patch(site: Path, wave: np.ndarray, channel: int, alpha: float) -> np.ndarray:
    """The patched decode computed by hand with the installed module: alpha times the
    RMS norm of the frames added to one channel of the encoder output."""
    import torch

    sys.path.insert(0, str(site))
    try:
        module = importlib.import_module("steerlab_example_plugin")
        assert Path(module.__file__).is_relative_to(site)
        model = module.CosineCodec().eval()
        pad = model.padded_length(wave.shape[-1]) - wave.shape[-1]
        with torch.no_grad():
            x = torch.nn.functional.pad(torch.from_numpy(wave)[None], (0, pad))
            frames = model.encoder(torch.nn.functional.pad(x, (module.KERNEL - module.HOP, 0)))
            n_frames = -(-wave.shape[-1] // module.HOP)
            frames[:, channel, :n_frames] += alpha * float(frames[0, :, :n_frames].pow(2).sum(0).mean().sqrt())
            out = model.decoder(frames)[..., module.KERNEL - module.HOP :]
        return out[0, :, : wave.shape[-1]].numpy()
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("steerlab_example_plugin", None)


def test_layers_learn_and_intervene_through_the_real_command(site, tmp_path):
    layers = json.loads(_steerlab(site, "layers", "--model", "example_cosine_codec", "--json", cwd=tmp_path).stdout)
    assert layers["model"] == "example_cosine_codec"
    (row,) = layers["layers"]
    assert (row["name"], row["channels"], row["hop_samples"], row["frame_rate_hz"]) == ("analysis", 128, 32, 500.0)
    assert (row["receptive_field_samples"], row["kernel_size"]) == (128, 128)
    assert layers["aliases"] == {"bottleneck": "analysis"}

    dictionary = tmp_path / "dict"
    learned = json.loads(
        _steerlab(
            site,
            "learn",
            "features",
            "--model",
            "example_cosine_codec",
            "-l",
            "bottleneck",
            "--data",
            "synth:2",
            "--clip-seconds",
            "0.5",
            "--size",
            "16",
            "--k",
            "4",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "-o",
            str(dictionary),
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert (learned["model"], learned["layer"], learned["width"], learned["size"]) == (
        "example_cosine_codec",
        "analysis",
        128,
        16,
    )
    assert learned["metrics"]["n_vectors"] == 2 * 250  # two 0.5 s clips at 500 frames per second
    assert (dictionary / "config.json").is_file() and list(dictionary.glob("*.safetensors"))

    t = np.arange(SR // 2) / SR
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)[None]
    wav = tmp_path / "tones.wav"
    sf.write(wav, wave.T, SR, subtype="FLOAT")
    out = tmp_path / "out"
    channel, alpha = 8, 0.5  # the cosine of the band centred on 1062.5 Hz
    # no fades: the hand-computed patch below adds the same amount to every frame
    docs = json.loads(
        _steerlab(
            site,
            "intervene",
            str(wav),
            "--model",
            "example_cosine_codec",
            "-l",
            "bottleneck",
            "-c",
            str(channel),
            "-a",
            str(alpha),
            "-t",
            "1000",
            "--fade-in",
            "0",
            "--fade-out",
            "0",
            "-o",
            str(out),
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    (doc,) = docs
    assert doc["model"]["name"] == "example_cosine_codec" and doc["layer"] == "analysis"
    patched, sr = sf.read(out / "tones" / "patched.wav", dtype="float32", always_2d=True)
    baseline, _ = sf.read(out / "tones" / "baseline.wav", dtype="float32", always_2d=True)
    assert sr == SR and patched.shape == (SR // 2, 1)
    # the decode of an unpatched in-band mixture is the mixture (unit-gain synthesis)
    assert np.abs(baseline[1_000:-1_000, 0] - wave[0, 1_000:-1_000]).max() < 0.01
    np.testing.assert_allclose(patched.T, _expected_patch(site, wave, channel, alpha), atol=1e-5)
    # a constant on one channel of a strided bank repeats at the frame rate: the new partial
    # lands on the multiple of 500 Hz inside the band (1000 Hz), not on the band's centre
    target = doc["scores"]["spectral"]["targets"][0]
    assert target["gain_db"] > 20.0 and target["concentration"] > 0.5
