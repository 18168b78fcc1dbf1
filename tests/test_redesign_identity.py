"""Behaviour stays the same through the redesign (issue 14): the quickstart's outputs and every row of
``steerlab partials --quick`` equal what steerlab wrote before it (tests/data/golden, made at commit
0714ab6 with the commands in meta.json; the partials rows remade where issue 11 changed a method on
purpose, as meta.json's ``remade`` says).

On the machine fingerprint recorded with the golden files (torch, numpy, CPU model and vector
capability), with one thread as they were made (the runs here are started with OMP_NUM_THREADS=1),
the comparison is bitwise. Elsewhere a different BLAS/oneDNN kernel may round float32 sums
differently, so floats are compared to 1e-5 relative there and everything else (keys, names, integers,
strings, nulls and their reasons) still exactly; the test says which comparison it made.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

GOLDEN = Path(__file__).parent / "data" / "golden"
VOLATILE_SCORE_KEYS = ("provenance", "versions")


def _fingerprint() -> dict:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


BITWISE = _fingerprint() == json.loads((GOLDEN / "meta.json").read_text())["fingerprint"]


def _same(a, b, where: str) -> list[str]:
    """Differences between two JSON values: exact on this fingerprint, floats to 1e-5 relative elsewhere."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a.keys() ^ b.keys())} differ"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and not BITWISE:
        return [] if math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9) else [f"{where}: {a!r} != {b!r}"]
    return [] if (a == b and type(a) is type(b)) else [f"{where}: {a!r} != {b!r}"]


#: the golden files were made with one thread: float32 sums reduce in a different order on more threads
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _steerlab(*args: str, cwd: Path) -> None:
    env = {**os.environ, **ONE_THREAD}
    done = subprocess.run([sys.executable, "-m", "steerlab", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_quickstart_outputs_unchanged(tmp_path):
    _steerlab("synth", "chord.wav", "--kind", "chord", "--seed", "1", cwd=tmp_path)
    _steerlab(
        "intervene",
        "chord.wav",
        "--layer",
        "first_conv",
        "--feature",
        "first_conv-features:2",
        "--alpha",
        "0.5",
        "--target-hz",
        "440",
        "-o",
        "quickstart-out",
        cwd=tmp_path,
    )
    out = tmp_path / "quickstart-out" / "chord"
    golden = np.load(GOLDEN / "quickstart-waves.npz")
    for name in ("baseline", "patched"):
        wave, _ = sf.read(out / f"{name}.wav", dtype="float32")
        if BITWISE:
            assert np.array_equal(wave, golden[name]), f"{name}.wav differs from the golden output"
        else:
            np.testing.assert_allclose(wave, golden[name], rtol=0, atol=1e-5)
    scores = json.loads((out / "scores.json").read_text())
    for key in VOLATILE_SCORE_KEYS:
        scores.pop(key)
    scores["input"].pop("path")
    scores["direction"]["dictionary"].pop("path")
    assert _same(scores, json.loads((GOLDEN / "quickstart-scores.json").read_text()), "scores") == []


def test_partials_quick_rows_unchanged(tmp_path):
    _steerlab("partials", "--quick", "-o", "run", cwd=tmp_path)
    rows = {r["key"]: r for r in map(json.loads, (tmp_path / "run" / "results.jsonl").read_text().splitlines())}
    with gzip.open(GOLDEN / "partials-quick-results.jsonl.gz", "rt") as fh:
        golden = {r["key"]: r for r in map(json.loads, fh.read().splitlines())}
    assert rows.keys() == golden.keys(), f"{len(rows.keys() ^ golden.keys())} row keys differ"
    for row in (*rows.values(), *golden.values()):
        row.pop("versions")  # package versions, not behaviour: the fingerprint above covers them
    differences = [d for key in golden for d in _same(rows[key], golden[key], key)]
    assert differences == [], (
        f"{len(differences)} differences ({'bitwise' if BITWISE else 'float 1e-5'}): {differences[:5]}"
    )
