"""The built-in concepts' scorers give the values of their unbatched measures (issue 15's speed work):
``score`` of each (baseline, edited) pair below, synthetic and rendered-instrument pairs, equals
tests/data/concept-scores-golden.json (made with the unbatched measures of commit ed9529d, the measures
of note, chord-quality and brightness that hold on rendered sounds, by ``python
tests/test_concept_scoring.py``), and ``score_many`` (the battery's path: the edited signals of a batch
in one STFT call, each baseline's features once) equals ``score`` bit for bit; the battery writes the
same rows through either.

On the fingerprint recorded with the golden file (numpy, scipy, librosa, CPU and its vector
capability) the comparison is bitwise; elsewhere an FFT library may round differently, so floats are
compared to 1e-9 relative there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "data" / "concept-scores-golden.json"
CONCEPTS = ("note", "chord-quality", "brightness", "onset", "loudness")
CASES = [(name, variant) for variant in ("synthetic", "instrument") for name in CONCEPTS]
SR = 24_000


def _fingerprint() -> dict:
    import librosa
    import scipy
    import torch

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in line
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "librosa": librosa.__version__,
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _jobs(name: str, variant: str) -> list[tuple[str, np.ndarray, np.ndarray, object]]:
    """(label, baseline, edited, spec): both ways of the ideal edit and every wrong edit, on two
    seeded pairs of ``variant``, plus a quieter copy of the edit (a baseline scored against
    several edits)."""
    from steerlab.battery.registry import concepts

    if variant == "instrument":
        pytest.importorskip("tinysoundfont", reason="the render extra renders the instrument pairs")
    concept = concepts().get(name)
    out = []
    for spec in concept.pairs(SR, [3, 4], 0.05, True, variant):
        without, with_ = concept.render(spec)
        out.append((f"{spec.seed} oracle", without, with_, spec))
        out.append((f"{spec.seed} reverse", with_, without, spec))
        out.append((f"{spec.seed} half", without, without + 0.5 * (with_ - without), spec))
        for wrong, (a, b) in concept.wrong_edits(spec).items():
            out.append((f"{spec.seed} {wrong}", a, b, spec))
    return out


def _same(a, b, exact: bool) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], exact) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b if exact else math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b and type(a) is type(b)


def _plain(score: dict) -> dict:
    return json.loads(json.dumps(score))


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_scores_equal_the_unbatched_measures(name, variant):
    from steerlab.battery.registry import concepts

    golden = json.loads(GOLDEN.read_text())
    exact = golden["fingerprint"] == _fingerprint()
    concept = concepts().get(name)
    jobs = _jobs(name, variant)
    want = golden["scores"][f"{name}/{variant}"]
    assert [label for label, *_ in jobs] == list(want)
    for label, b, p, spec in jobs:
        got = _plain(concept.score(b, p, spec))
        assert _same(got, want[label], exact), (name, variant, label, got, want[label])


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_score_many_is_score_bit_for_bit(name, variant):
    """Mixed lengths and pairs in one call, a baseline shared by several edits and the memo reused
    by a second call: every value is score's."""
    from steerlab.battery.registry import concepts

    concept = concepts().get(name)
    jobs = _jobs(name, variant)
    jobs.append(("short", jobs[0][1][:-4000], jobs[0][2][:-4000], jobs[0][3]))  # another length
    keyed = [((label.split()[0], id(b)), b[None], p[None], spec) for label, b, p, spec in jobs]
    memo: dict = {}
    many = concept.score_many(keyed[:5], memo) + concept.score_many(keyed[5:], memo)
    assert memo, "the baselines' features are kept for the next batch"
    for (label, b, p, spec), got in zip(jobs, many):
        assert _same(got, concept.score(b, p, spec), exact=True), (name, label)


def test_salience_interpolation_is_numpys():
    from steerlab.builtins.concepts.note import _interp_rows

    rng = np.random.default_rng(0)
    s = rng.random((2049, 7))
    freqs = np.arange(2049) * SR / 4096
    for x in (*rng.uniform(0, freqs[-1], 50), freqs[10], freqs[-1], 0.0):
        assert np.array_equal(_interp_rows(x, freqs, s), np.array([np.interp(x, freqs, s[:, t]) for t in range(7)]))


class _PerItem:
    """A concept seen through its ``score`` only (what a plugin concept without ``score_many`` offers)."""

    def __init__(self, concept) -> None:
        self._concept = concept

    def __getattr__(self, name: str):
        if name == "score_many":
            raise AttributeError(name)
        return getattr(self._concept, name)


@pytest.mark.parametrize("name", ["note", "onset"])
def test_the_battery_writes_the_same_rows_through_score_many(tmp_path, name):
    """``_execute`` on a tiny grid of the embedded model: the rows scored in batches (the baselines'
    features once) are byte for byte those scored item by item."""
    from steerlab.battery import runner
    from steerlab.battery.plan import work_items
    from steerlab.battery.registry import concepts
    from steerlab.partials import build

    concept = concepts().get(name)
    cfg = build(None, quick=True).merged(
        {
            "grid": {"strengths": [1.0], "subtract_strengths": [1.0], "methods": ["diffmeans", "random"]},
            "stimuli": {"train_seeds": 2, "test_seeds": 2},
            "controls": {"positive_models": []},
            "run": {"max_batch": 4},
        }
    )
    plans, chash, _, dicts = runner.prepare(concept, cfg, None, True, ["latent"])
    vectors, prov, _ = runner._learn(plans, cfg, dicts, runner._NullBar)
    cp = plans[0]
    items = work_items(cp, cfg, chash, set(prov))
    context = {"weights": {cp.model.name: cp.model.weights_hash()}, "seed": cfg.run.seed}
    written = {}
    for how, plan in (("batched", cp), ("per item", dataclasses.replace(cp, concept=_PerItem(concept)))):
        (tmp_path / how).mkdir()
        store = runner.BatteryStore(tmp_path / how, chash).open()
        runner._execute([(plan, items)], vectors, prov, store, context, cfg.run.max_batch, lambda n: None)
        written[how] = (tmp_path / how / "results.jsonl").read_bytes()
    assert len(written["batched"].splitlines()) == len(items) >= 16
    assert written["batched"] == written["per item"]


def _make_golden() -> None:
    from steerlab.battery.registry import concepts

    doc = {
        "fingerprint": _fingerprint(),
        "scores": {
            f"{name}/{variant}": {
                label: _plain(concepts().get(name).score(b, p, spec)) for label, b, p, spec in _jobs(name, variant)
            }
            for name, variant in CASES
        },
    }
    GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(_make_golden())
