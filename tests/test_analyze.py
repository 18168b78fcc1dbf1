"""``steerlab analyze``: each measure on data with a planted answer, the first-layer weight
variants, options, one end-to-end report on the embedded model and one-line errors."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from steerlab.analysis import dynamics, geometry, spectra
from steerlab.analysis.options import ANALYSES, AnalysisOptions

torch.set_num_threads(1)
SR = 24_000


def planted_single(n=4000, width=32, size=48, noise=0.02, seed=0):
    """Vectors each along one of ``size`` planted unit directions (positive weight) plus noise."""
    rng = np.random.default_rng(seed)
    d = geometry.random_directions(size, width, rng)
    x = d[rng.integers(size, size=n)] * rng.uniform(0.5, 2.0, (n, 1)) + noise * rng.standard_normal((n, width))
    return x, d, rng


def test_coverage_is_high_with_the_planted_directions_and_low_with_random_ones():
    x, d, rng = planted_single()
    planted = geometry.coverage(x, d, threshold=0.9)
    random = geometry.coverage(x, geometry.random_directions(len(d), x.shape[1], rng), threshold=0.9)
    assert planted["share_covered"] > 0.99 and planted["mean_best_cosine"] > 0.95
    assert random["share_covered"] < 0.02 and random["mean_best_cosine"] < 0.6
    assert planted["directions_used"] == len(d)
    # vectors pointing against the directions are not covered: the cosine is signed
    assert geometry.coverage(-x, d, threshold=0.9)["share_covered"] < 0.02


def test_usage_counts_strongly_active_directions():
    codes = np.array([[1.0, 0.6, 0.0], [1.0, 0.4, 0.0], [0.0, 0.0, 0.0], [0.2, 0.0, 0.9]])
    assert np.allclose(geometry.usage(codes, 0.5), [0.5, 0.25, 0.25])
    assert np.allclose(geometry.usage(codes, 0.3), [0.5, 0.5, 0.25])
    assert list(geometry.usage_order(codes, 0.5))[0] == 0
    s = geometry.usage_summary(np.array([0.5, 0.3, 0.1, 0.1, 0.0]), top_n=2, floor=0.05)
    assert s["n_used_above_floor"] == 4 and s["top_n_share_of_activations"] == pytest.approx(0.8)
    assert s["n_for_90_percent"] == 3 and s["sorted_usage"][0] == 0.5


def test_reconstruction_error_vanishes_on_the_planted_subspace_only():
    rng = np.random.default_rng(1)
    width, rank = 16, 5
    basis = geometry.random_directions(rank, width, rng)
    x = rng.standard_normal((3000, rank)) @ basis
    ordered = np.concatenate([basis, geometry.random_directions(11, width, rng)])
    curve = geometry.error_curve(x, ordered, [1, 3, 5, 8, 16])
    assert curve[2] < 1e-20 and curve[0] > 0.5
    assert all(a >= b - 1e-12 for a, b in zip(curve, curve[1:]))
    random = np.mean([geometry.projection_error(x, geometry.random_directions(rank, width, rng)) for _ in range(5)])
    assert 0.45 < random < 0.9  # a random 5-dim subspace of 16 keeps about 5/16 of a random rank-5 signal
    assert geometry.m_grid(128, 12)[:24] == list(range(1, 25)) and geometry.m_grid(128, 12)[-1] == 128


def test_hungarian_stability_is_one_for_identical_dictionaries_and_low_for_random_ones():
    rng = np.random.default_rng(2)
    a = geometry.random_directions(64, 32, rng)
    perm = rng.permutation(64)
    b = a[perm]
    order_a = np.arange(64)
    order_b = np.argsort(perm)  # b's rows in a's usage order: the same top 20 directions
    same = geometry.stability([a, b, a.copy()], [order_a, order_b, order_a], top_n=20)
    assert same["mean_top_vs_top"] == pytest.approx(1.0) and same["mean_top_vs_all"] == pytest.approx(1.0)
    assert len(same["pairs"]) == 3
    rand = geometry.stability([geometry.random_directions(64, 32, rng) for _ in range(3)], [order_a] * 3, top_n=20)
    assert rand["mean_top_vs_top"] < 0.45
    cos, partner = geometry.matched_cosines(a[:5], b)
    assert np.allclose(cos, 1.0) and list(perm[partner]) == [0, 1, 2, 3, 4]


def test_redundancy_sees_duplicates():
    eye = np.eye(8)
    assert geometry.redundancy(eye)["mean_abs_offdiagonal"] == 0.0
    dup = np.concatenate([eye[:4], eye[:4] + 0.05])
    r = geometry.redundancy(dup, threshold=0.9)
    assert r["pairs_above_threshold"] == 4 and r["max_abs_offdiagonal"] > 0.99


def clustered_starts(n=3000, classes=4, width=8, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(classes, size=n)
    centres = 5.0 * np.eye(width)[:classes]
    return centres[labels] + rng.standard_normal((n, width)), labels, rng


def one_hot(labels, size):
    codes = np.zeros((len(labels), size))
    codes[np.arange(len(labels)), labels] = 1.0 + 0.1 * (labels % 3)
    return codes


def test_locality_beats_chance_when_the_archetype_depends_on_the_start():
    starts, labels, _ = clustered_starts()
    loc = dynamics.locality(starts, one_hot(labels, 6), top_n=20, seed=0)
    assert loc["n_classes"] == 4 and loc["chance_uniform"] == 0.25
    assert loc["accuracy"] > 0.95
    assert all(t["radius"] < 0.8 * t["random_radius"] for t in loc["dispersion"])
    assert loc["share_tighter_than_random"] == 1.0


def test_locality_is_near_chance_when_the_archetype_does_not_depend_on_the_start():
    starts, _, rng = clustered_starts()
    labels = rng.integers(4, size=len(starts))
    loc = dynamics.locality(starts, one_hot(labels, 6), top_n=20, seed=0)
    assert abs(loc["accuracy"] - 0.25) < 0.08 and loc["accuracy"] < loc["chance_majority"] + 0.06
    assert all(abs(t["radius"] / t["random_radius"] - 1) < 0.1 for t in loc["dispersion"])


def test_narrowband_measure_separates_a_sine_from_noise():
    rng = np.random.default_rng(4)
    t = np.arange(512) / SR
    sines = np.stack([np.sin(2 * np.pi * 440 * t + ph) for ph in rng.uniform(0, 2 * np.pi, 8)])
    noise = rng.standard_normal((8, 512))
    band = 3 * SR / 512
    s = spectra.spectrum_report(sines, SR, band)
    n = spectra.spectrum_report(noise, SR, band)
    assert abs(s["mean_spectrum"]["peak_hz"] - 440) < 30
    assert s["mean_spectrum"]["effective_bandwidth_hz"] < 150 and s["mean_spectrum"]["fwhm_hz"] < 100
    assert s["mean_spectrum"]["peak_share"] > 0.95 and s["per_fragment_median"]["peak_share"] > 0.95
    assert n["mean_spectrum"]["effective_bandwidth_hz"] > 5000 and n["mean_spectrum"]["peak_share"] < 0.1
    assert n["per_fragment_median"]["effective_bandwidth_hz"] > 3000
    assert s["mean_spectrum"]["low_share"] > 0.95 and n["mean_spectrum"]["low_share"] < 0.15


def test_fragments_are_cut_around_a_centre_and_aligned():
    wave = np.arange(100, dtype=float)
    assert list(spectra.fragment(wave, 2, 6)) == [0, 0, 1, 2, 3, 4]  # sample 2 lands at index 6 // 2
    rng = np.random.default_rng(5)
    pattern = np.concatenate([np.zeros(20), -np.hanning(12), np.zeros(20)])
    frags = np.stack([np.roll(pattern, s) for s in (-3, 0, 2, 4, -1)]) + 0.01 * rng.standard_normal((5, 52))
    aligned, shifts = spectra.align(frags, max_lag=6)
    assert np.ptp(np.argmin(aligned, axis=1)) <= 1
    assert np.ptp(np.array([-3, 0, 2, 4, -1]) + shifts) == 0


def test_trajectory_smoothness_tells_a_curve_from_a_random_walk():
    t = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t), 0 * t], axis=1)
    walk = np.cumsum(np.random.default_rng(6).standard_normal((200, 3)), axis=0)
    jitter = np.random.default_rng(7).standard_normal((200, 3))
    assert dynamics.smoothness(circle) > 0.99
    assert abs(dynamics.smoothness(walk)) < 0.2 and dynamics.smoothness(jitter) < -0.3
    proj, ratios = dynamics.project_trajectories([circle, walk])
    assert proj[0].shape == (200, 2) and len(ratios) == 2


def test_weight_variants_replace_only_the_first_conv_of_a_copy(embedded):
    from steerlab import api, tracing
    from steerlab.analysis import weights

    f = weights.handcrafted_filters(12, 1, 7)
    assert np.allclose(f.sum(axis=2), 0) and np.allclose(np.linalg.norm(f, axis=2), 1)
    before = embedded.weights_hash()
    info = api.layers(embedded).get("first_conv")
    x = torch.from_numpy(np.sin(2 * np.pi * 220 * np.arange(2400) / SR)[None].astype(np.float32))
    base = tracing.capture(embedded, [x], [info])[0][info.name]
    load = api.load_model
    hand, rec = weights.variant(embedded, "handcrafted", load=load)
    rand, rec_r = weights.variant(embedded, "random", seed=0, load=load)
    same, rec_t = weights.variant(embedded, "trained")
    assert same is embedded and embedded.weights_hash() == before  # the analysed model is untouched
    _, conv = weights.first_conv(hand)
    w = conv.weight.detach().squeeze(1).numpy()
    assert np.allclose(w / np.linalg.norm(w, axis=1, keepdims=True), f[:, 0], atol=1e-6)
    assert np.allclose(np.linalg.norm(w, axis=1), np.linalg.norm(rec["trained_filters"], axis=1), atol=1e-5)
    a_hand = tracing.capture(hand, [x], [info])[0][info.name]
    a_rand = tracing.capture(rand, [x], [info])[0][info.name]
    # a 220 Hz sine barely excites zero-mean high-frequency patterns; trained filters respond strongly
    assert a_hand.std(dim=1).mean() < 0.5 * base.std(dim=1).mean()
    assert not torch.allclose(a_rand, base) and rec_r["weights_hash"] != before
    assert "copy" in rec["how"] and rec["module_path"] == info.module_path


def test_options_validate_themselves():
    with pytest.raises(ValueError, match=r"seeds must hold at least three distinct values .* got \[1, 1, 2\]"):
        AnalysisOptions(seeds=(1, 1, 2))
    with pytest.raises(ValueError, match="Did you mean 'locality'"):
        AnalysisOptions(only=("localty",))
    with pytest.raises(ValueError, match=r"coverage_threshold must be a number in \[-1, 1\]"):
        AnalysisOptions(coverage_threshold=1.5)
    assert AnalysisOptions(only=("b", "coverage")).only == ("coverage", "reconstruction")
    assert AnalysisOptions(only=("a",), seeds=(1,)).seeds == (1,)  # stability not selected: one seed is enough
    quick = AnalysisOptions.quick_preset(top_n=5)
    assert quick.quick and quick.top_n == 5 and quick.max_vectors < AnalysisOptions().max_vectors


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


LEARN = [
    "-l",
    "first_conv",
    "--data",
    "synth:4",
    "--size",
    "32",
    "--k",
    "4",
    "--epochs",
    "1",
    "--subsample",
    "0.05",
    "--batch-size",
    "512",
]
QUICK = [
    "--quick",
    "--max-vectors",
    "3000",
    "--epochs",
    "1",
    "--top-n",
    "8",
    "--trajectory-frames",
    "60",
    "--fragments",
    "4",
]


@pytest.fixture(scope="module")
def archetypes(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("dicts") / "A"
    res = CliRunner().invoke(cli, ["learn", "archetypes", *LEARN, "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_analyze_end_to_end_writes_every_analysis(cli, archetypes, tmp_path):
    out = tmp_path / "R"
    res = CliRunner().invoke(cli, ["analyze", str(archetypes), "--data", "synth:3", "-o", str(out), *QUICK])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["format"] == "steerlab-analysis-report" and doc["dictionary"]["kind"] == "archetype"
    keys = [f"{letter}_{name}" for letter, name in zip("abcdefghij", ANALYSES)]
    assert list(doc["analyses"]) == keys
    assert all(doc["analyses"][k]["status"] == "ran" for k in keys)
    for k in keys:
        a = doc["analyses"][k]
        assert a["headline"] and a["source"].startswith("Post 1") and (out / a["figure"]).is_file()
        p = a["provenance"]
        assert p["dictionary_config_sha256"] and p["model_weights_hash"] and p["versions"]["steerlab"]
        assert p["data"]["sha256"] and p["seeds"]
    assert doc["analyses"]["e_stability"]["provenance"]["seeds"] == [0, 1, 2, 3]
    assert doc["options"]["quick"] is True and doc["options"]["coverage_threshold"] == 0.7
    assert doc["data"]["n_vectors"] == 3000 and doc["data"]["specs"] == ["synth:3"]
    assert doc["model"]["layer"]["name"] == "encoder.0.conv"
    cov = doc["analyses"]["a_coverage"]["summary"]
    assert 0 <= cov["share_covered"] <= 1 and -1 <= cov["mean_best_cosine"] <= 1
    # measured properties that hold for any weights of this layer
    assert doc["analyses"]["b_reconstruction"]["summary"]["at"]["dictionary (most used first)"]["m=32"] < 1e-8
    data = doc["analyses"]["f_data"]["table"]
    assert data["flat"]["share_still"] > 0.9 and data["real"]["share_still"] < 0.1
    assert data["flat"]["baseline_n_used_above_floor"] <= 4  # no motion: the codes of every step are the same
    assert doc["analyses"]["g_weights"]["summary"]["variants"]["handcrafted"]["filters"]
    traj = doc["analyses"]["j_trajectories"]["table"]
    assert traj["sine 440 Hz"]["smoothness"] > traj["white noise (RMS 0.1)"]["smoothness"] + 0.5
    lobe = doc["analyses"]["i_fragments"]["summary"]["layer_main_lobe_hz"]
    assert lobe == pytest.approx(24_000 / 7)
    page = (out / "report.html").read_text()
    images = page.split("data:image/png;base64,")[1:]
    assert len(images) == 10
    assert all(base64.b64decode(img.split("'")[0])[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "96%" in page and "0.94" in page and "Skipped" not in page
    # issue 10: every null in report.json carries its reason (options left to auto, layer kind, ...)
    from steerlab.schema import unexplained_nulls

    assert unexplained_nulls(doc) == []
    assert doc["data"]["manifest"]["input_min"] < 0 < doc["data"]["manifest"]["input_max"]
    assert doc["options"]["band_hz"] is None and "auto" in doc["options"]["band_hz_reason"]
    assert doc["analyses"]["i_fragments"]["summary"]["band_hz"] > 0


def test_unexplained_nulls_finds_every_null_without_a_reason():
    from steerlab.schema import unexplained_nulls

    doc = {
        "a": None,
        "b": None,
        "b_reason": "why",
        "c": {"x": None, "reason": "no data"},
        "d": [1, None, {"y": None}],
        "e": {"z": None, "z_reason": ""},
        "f_reason": None,
    }
    assert unexplained_nulls(doc) == ["a", "d[1]", "d[2].y", "e.z"]


def test_locality_is_skipped_for_features_with_a_reason(cli, tmp_path):
    feats = tmp_path / "F"
    assert CliRunner().invoke(cli, ["learn", "features", *LEARN, "-o", str(feats)]).exit_code == 0
    out = tmp_path / "R"
    res = CliRunner().invoke(
        cli, ["analyze", str(feats), "--data", "synth:2", "-o", str(out), *QUICK, "--only", "a,c,h", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    status = {k: a["status"] for k, a in doc["analyses"].items()}
    assert status["a_coverage"] == status["c_usage"] == "ran" and status["b_reconstruction"] == "skipped"
    assert "by construction" in doc["analyses"]["h_locality"]["reason"]
    assert set(json.loads(res.stdout)["analyses"]) == {"a_coverage", "c_usage"}
    # the plain summary lists every analysis, the ones not run with their reason (h included)
    res = CliRunner().invoke(
        cli, ["analyze", str(feats), "--data", "synth:2", "-o", str(out), *QUICK, "--only", "a,h", "--overwrite"]
    )
    assert res.exit_code == 0, res.output
    lines = {line.split(":", 1)[0]: line for line in res.stdout.splitlines() if ":" in line}
    keys = [f"{letter}_{name}" for letter, name in zip("abcdefghij", ANALYSES)]
    assert all(k in lines for k in keys), res.stdout
    assert "skipped:" not in lines["a_coverage"]
    assert lines["h_locality"].startswith("h_locality: skipped: ") and "by construction" in lines["h_locality"]
    assert lines["b_reconstruction"] == "b_reconstruction: skipped: not selected (--only / --skip)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nowhere", "--data", "synth:1"], "is not a steerlab dictionary"),
        (["{dict}", "--data", "{empty}"], "no usable audio in"),
        (["{dict}", "--data", "synth:1", "--model", "samplecnn_24khz"], "learned on 'tiny_encodec_24khz'"),
        (
            ["{dict}", "--data", "synth:1", "--seeds", "1,2"],
            "invalid analysis options: --seeds must hold at least three distinct values for seed stability (e), got [1, 2]",
        ),
        (["{dict}", "--data", "synth:1", "--only", "locallity"], "Did you mean 'locality'"),
        (["{version}", "--data", "synth:1"], "format version 99"),
        (["{weights}", "--data", "synth:1"], "--allow-weights-mismatch"),
        (["{dict}", "--data", "synth:1", "--trajectory-clip", "{silence}"], "no variance"),
    ],
)
def test_analyze_errors_are_one_line(cli, archetypes, tmp_path, args, message):
    import shutil

    import soundfile as sf

    (tmp_path / "empty").mkdir()
    sf.write(tmp_path / "silence.wav", np.zeros(48_000, np.float32), 24_000)
    for name, key, value in (("version", "version", 99), ("weights", "weights_hash", "0" * 64)):
        shutil.copytree(archetypes, tmp_path / name)
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        cfg[key] = value
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    subs = dict(
        tmp=tmp_path,
        dict=archetypes,
        empty=tmp_path / "empty",
        version=tmp_path / "version",
        weights=tmp_path / "weights",
        silence=tmp_path / "silence.wav",
    )
    args = [a.format(**subs) for a in args]
    res = CliRunner().invoke(cli, ["analyze", *args, "-o", str(tmp_path / "R"), "--quick"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert not (tmp_path / "R").exists()


def test_locality_subsampling_keeps_every_class_populated():
    starts, labels, rng = clustered_starts(n=4000, classes=4)
    labels = labels.copy()
    labels[:3] = 5  # a rare fifth archetype: 3 transitions of 4000
    loc = dynamics.locality(starts, one_hot(labels, 6), top_n=5, seed=0, max_vectors=500)
    assert loc["n_vectors"] <= 500 and all(t["n"] >= 1 for t in loc["dispersion"])
    assert all(np.isfinite(t["radius"]) for t in loc["dispersion"])


def test_the_trajectory_clip_is_the_loudest_stretch_of_the_users_file(tmp_path):
    """--trajectory-clip: the music trajectory is the n samples of the user's file with the most
    energy (a quiet intro or trailing silence is never what is measured); too short: one line."""
    import soundfile as sf

    from steerlab.analysis.pipeline import trajectory_music
    from steerlab.errors import ConfigError

    class Layer:
        sample_rate = 24_000

    sr, n = 24_000, 4_800
    rng = np.random.default_rng(0)
    x = np.concatenate([0.01 * rng.standard_normal(sr), 0.5 * rng.standard_normal(n), np.zeros(sr)])
    sf.write(tmp_path / "clip.wav", x.astype(np.float32), sr, subtype="FLOAT")
    got = trajectory_music(tmp_path / "clip.wav", Layer(), n)
    np.testing.assert_array_equal(got, x[sr : sr + n].astype(np.float32).astype(np.float64))
    with pytest.raises(ConfigError, match="holds 52800 samples") as info:
        trajectory_music(tmp_path / "clip.wav", Layer(), 60_000)
    assert info.value.parameters == ("trajectory_clip", "trajectory_frames")


def _edge_run(clip_samples=24_000, hop=100, rf=7, clips=3, edge_only=False):
    """A stub analysis run whose direction 0 is strongest at the clips' first and last frames."""
    from types import SimpleNamespace

    from steerlab.analysis.data import Captured

    rng = np.random.default_rng(8)
    waves = [rng.standard_normal((1, clip_samples)) for _ in range(clips)]  # no exact zero inside a clip

    class Corpus:
        def clips(self, manifest):
            yield from ((f"c{i}", w) for i, w in enumerate(waves))

    frames = clip_samples // hop
    clip, frame = np.repeat(np.arange(clips), frames), np.tile(np.arange(frames), clips)
    edge = np.minimum(frame, frames - 1 - frame)  # frames from the nearer edge
    codes = np.stack([np.where(edge < 3, 10.0 - edge, 0.0 if edge_only else 1.0), np.ones(len(frame))], axis=1)
    x = rng.standard_normal((len(frame), 4))
    cap = Captured(x.astype(np.float32), x.astype(np.float32), clip, frame, "stub", clip_samples=None)
    info = SimpleNamespace(hop=hop, receptive_field=rf, sample_rate=SR)
    opts = AnalysisOptions(fragment_samples=256, fragments_per_latent=4, fragment_latents=1)
    run = SimpleNamespace(
        opts=opts,
        info=info,
        target="feature",
        order=np.array([0, 1]),
        codes=codes,
        x=x,
        dirs=np.eye(2, 4),
        cap=cap,
        rng=np.random.default_rng(0),
        corpus=Corpus(),
        usage=np.array([0.5, 0.5]),
    )
    return run, waves


def test_fragments_come_only_from_frames_inside_the_clip(monkeypatch):
    """Issue: top activations at clip edges gave fragments (and reels) of zero padding. Every
    fragment now lies inside its clip, past the receptive field's warm-up at either end."""
    from steerlab.analysis import pipeline
    from steerlab.schema import unexplained_nulls

    run, _ = _edge_run()
    heard = {}
    monkeypatch.setattr(pipeline, "_listening", lambda h, sr, key: heard.update(h) or {})
    out = pipeline._fragments(run)
    listen = out["summary"]["listen_samples"]
    assert listen == int(0.3 * SR) and heard["direction 0"].shape == (4, listen)
    for name, f in heard.items():
        assert len(f) == 4 and np.count_nonzero(f == 0) == 0, name  # no sample from outside the clip
    row = out["table"][0]
    assert row["fragments_of"] == "direction 0" and row["n"] == 4 and "n_reason" not in row
    assert row["mean_spectrum"]["peak_hz"] is not None
    assert unexplained_nulls(out["table"]) == []
    # a direction active only at the edges has no usable fragment: null spectra with the reason
    run, _ = _edge_run(edge_only=True)
    out = pipeline._fragments(run)
    row = out["table"][0]
    assert row["n"] == 0 and row["mean_spectrum"] is None and "usable" in row["mean_spectrum_reason"]
    assert "no usable fragment for direction 0" in out["headline"]
    assert unexplained_nulls(out["table"]) == [] and out["figure"][:4] == b"\x89PNG"
    # clips too short for any usable frame: said, not an empty or failing report
    run, _ = _edge_run(clip_samples=6000)
    out = pipeline._fragments(run)
    assert all(r["n"] == 0 for r in out["table"]) and "no fragment is usable" in out["headline"]


def test_usable_rows_rule():
    from types import SimpleNamespace

    from steerlab.analysis.data import usable_rows

    layer = SimpleNamespace(hop=100, receptive_field=250)  # warm-up: ceil(2.5) + 1 = 4 frames
    frames = np.arange(50)
    ok = usable_rows(np.zeros(50, int), frames, np.array([5000]), layer, "feature", 200)
    assert frames[ok].tolist() == list(range(4, 46))
    ok = usable_rows(np.zeros(50, int), frames, np.array([5000]), layer, "archetype", 200)
    assert frames[ok].tolist() == list(range(4, 45))  # the transition t -> t+1 needs t+1 clear of the end too
    ok = usable_rows(np.zeros(50, int), frames, np.array([5000]), layer, "feature", 1200)
    assert frames[ok].tolist() == list(range(6, 44))  # the 1200-sample window: centre 650 .. 4350


def test_the_trajectory_clip_gets_the_checks_data_files_get(tmp_path):
    """--trajectory-clip is scanned like a --data file (a possibly truncated MP3 warns) and a
    silent or DC clip is refused, as --data silence is, instead of being plotted as music."""
    import soundfile as sf

    from steerlab.analysis.pipeline import trajectory_music
    from steerlab.errors import NoVarianceError, PossiblyTruncatedWarning

    class Layer:
        sample_rate, name = 24_000, "encoder.0.conv"

    t = np.arange(24_000 * 4) / 24_000
    whole = tmp_path / "tone.mp3"
    sf.write(str(whole), 0.3 * np.sin(2 * np.pi * 440 * t), 24_000, format="MP3", subtype="MPEG_LAYER_III")
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.warns(PossiblyTruncatedWarning, match="cut.mp3: only"):
        got = trajectory_music(cut, Layer(), 4_800)
    assert got.std() > 0.1  # still usable: a warning, not an error
    for name, value in (("silence.wav", 0.0), ("dc.wav", 0.25)):
        sf.write(tmp_path / name, np.full(48_000, value, np.float32), 24_000, subtype="FLOAT")
        with pytest.raises(NoVarianceError, match=f"no variance .*{name}.* equals {value:g}"):
            trajectory_music(tmp_path / name, Layer(), 4_800)


@pytest.mark.parametrize(
    "kind, sae, shown, hidden",
    [
        ("feature", {"kind_of_sae": "jumprelu", "k": 4, "l1": 0.001, "l0": None}, ["jumprelu", "l0"], ["<th>k<", "l1"]),
        ("archetype", {"kind_of_sae": "topk", "k": 4, "l1": 0.001}, ["topk", "<th>k</th><td>4<"], ["l1", "l0"]),
        ("feature", {"kind_of_sae": "relu", "k": 4, "l1": 0.002}, ["relu", "<th>l1</th><td>0.002<"], ["<th>k<"]),
    ],
)
def test_report_header_matches_the_target_and_the_architecture(kind, sae, shown, hidden):
    """The intro describes the dictionary's own target; the header names the architecture and only
    the parameters it uses (no k for a JumpReLU SAE)."""
    from steerlab.analysis.report import render_html

    doc = {
        "dictionary": {
            "path": "D",
            "kind": kind,
            "layer": "l",
            "size": 8,
            "width": 4,
            "k": 4,
            "config_sha256": "c",
            "sae": sae,
        },
        "model": {"name": "m", "weights_hash": "w"},
        "data": {"description": "d", "sha256": "s", "n_vectors": 1, "vectors_seen": 1},
        "options": {"quick": True},
        "versions": {},
        "analyses": {},
    }
    page = render_html(doc, {})
    head = page.split("<h3>Options</h3>")[0]
    assert ("Archetypes are SAE directions" in head) == (kind == "archetype")
    assert ("Features are SAE directions over response vectors" in head) == (kind == "feature")
    assert "<th>architecture</th>" in head
    assert all(s in head for s in shown) and not any(h in head for h in hidden), head


@pytest.mark.parametrize(
    "args, message",
    [
        (["features", "--architecture", "jumprelu", "--k", "4"], "--k does not apply to --architecture jumprelu"),
        (["archetypes", "--architecture", "relu", "--k", "4"], "--k does not apply to --architecture relu"),
        (["features", "--l1", "0.5"], "--l1 does not apply to --architecture topk: only relu uses it"),
        (["features", "--architecture", "relu", "--l0", "0.2"], "--l0 does not apply to --architecture relu"),
        (
            ["sweep", "--architecture", "jumprelu,relu", "--k", "4"],
            "--k does not apply to --architecture jumprelu,relu",
        ),
        (["sweep", "--architecture", "topk", "--l0", "0.2"], "--l0 does not apply to --architecture topk"),
    ],
)
def test_learn_refuses_an_option_its_architecture_does_not_use(cli, tmp_path, args, message):
    """--k, --l1 and --l0 given explicitly with an architecture that has no such parameter are
    refused in one line (they were silently ignored), before anything is captured or written."""
    res = CliRunner().invoke(cli, ["learn", *args, "-l", "first_conv", "--data", "synth:1", "-o", str(tmp_path / "D")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert not (tmp_path / "D").exists()


def test_learn_l0_sets_the_jumprelu_coefficient(cli, tmp_path):
    from steerlab.cli.learn import L0_HELP
    from steerlab.sae import SAEConfig

    assert f"{SAEConfig(width=4, size=32).l0:g};" in L0_HELP  # the help states SAEConfig's default
    learn = [a for a in LEARN if a not in ("--k", "4")]
    res = CliRunner().invoke(
        cli, ["learn", "features", *learn, "--architecture", "jumprelu", "--l0", "0.05", "-o", str(tmp_path / "D")]
    )
    assert res.exit_code == 0, res.output
    sae = json.loads((tmp_path / "D" / "config.json").read_text())["sae"]
    assert sae["kind_of_sae"] == "jumprelu" and sae["l0"] == 0.05
    # one capture, one duration, one rounding: the progress line says what the summary says
    captured = [line for line in res.output.splitlines() if line.startswith("captured ")]
    wrote = [line for line in res.output.splitlines() if line.startswith("wrote ")]
    import re

    seconds = {m for line in captured + wrote for m in re.findall(r"clips \((\d+(?:\.\d+)?) s", line)}
    assert len(seconds) == 1 and "." in next(iter(seconds)), res.output


def test_capture_progress_rounds_seconds_as_the_summary_does():
    from steerlab.capture import Manifest
    from steerlab.learning import _reporting

    said = []
    manifest = Manifest(clips=4, seconds=12.34, vectors=100)
    assert list(_reporting(iter([1, 2]), manifest, said.append, every_s=0.0)) == [1, 2]
    assert said and all("captured 4 clips (12.3 s)" in s for s in said)
