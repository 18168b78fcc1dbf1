"""Issue 10, item 5: data with no variance (silence, constant DC, one sample) gives one
line, exit 1 and no output from `learn`, at every layer and for both kinds; `analyze` on
such data gives one line too. Data that varies still learns."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from steerlab.errors import NoVarianceError
from steerlab.sae import NO_VARIANCE_RTOL, SAEConfig, train_sae

SR = 24_000


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


DEGENERATE = {  # name: list of (samples, value) files, all at the model's rate
    "silence-2-files": [(12_000, 0.0), (6_000, 0.0)],
    "dc-positive": [(12_000, 0.5), (3_000, 0.5)],
    "dc-negative": [(8_000, -0.25)],
    "one-sample": [(1, 0.7)],
}


def _write(folder, files):
    folder.mkdir()
    for i, (n, value) in enumerate(files):
        sf.write(folder / f"c{i}.wav", np.full(n, value, np.float32), SR, subtype="FLOAT")
    return folder


@pytest.mark.parametrize(
    "kind, layer", [("features", "first_conv"), ("features", "latent"), ("archetypes", "first_conv")]
)
@pytest.mark.parametrize("case", list(DEGENERATE))
def test_learn_refuses_data_without_variance(cli, tmp_path, case, kind, layer):
    data = _write(tmp_path / "data", DEGENERATE[case])
    out = tmp_path / "dict"
    res = CliRunner().invoke(
        cli,
        ["learn", kind, "-l", layer, "--data", str(data), "-o", str(out), "--size", "8", "--k", "2", "--epochs", "1"],
    )
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and res.output.splitlines()[-1] == lines[0] and "Traceback" not in res.output
    if case == "one-sample" and kind == "archetypes":  # one frame: not even one generator
        assert "gave no archetypes vectors" in lines[0]
    else:
        assert "the data has no variance at tiny_encodec_24khz" in lines[0] and "nothing was written" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_train_sae_separates_round_off_from_variance():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 12, generator=g).repeat(256, 1)
    noise = torch.randn(256, 12, generator=g)
    rms = float(base[0].norm())
    cfg = SAEConfig(width=12, size=8, k=2, epochs=1)
    for rel in (0.0, 1e-7, NO_VARIANCE_RTOL / 10):  # below the tolerance: round-off of one vector
        x = base + noise * (rel * rms / float(noise.norm(dim=1).mean()))
        with pytest.raises(NoVarianceError, match="256 vectors are all equal"):
            train_sae(x, cfg)
    x = base + noise * (1e-3 * rms / float(noise.norm(dim=1).mean()))
    _, metrics = train_sae(x, cfg)
    assert metrics["explained_variance"] is not None and metrics["dead_fraction"] < 1.0
    with pytest.raises(NoVarianceError):
        train_sae(torch.randn(1, 12), cfg)  # a single vector has no spread


@pytest.mark.parametrize("case", ["silence-2-files", "one-sample"])
def test_analyze_on_degenerate_data_is_one_line(cli, tmp_path, case):
    data = _write(tmp_path / "data", DEGENERATE[case])
    out = tmp_path / "R"
    res = CliRunner().invoke(cli, ["analyze", "first_conv-features", "--data", str(data), "-o", str(out), "--quick"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert res.output.splitlines()[-1].startswith(
        "Error: the data has no variance at tiny_encodec_24khz encoder.0.conv"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "dictionary, files, rate, args",
    [
        ("latent-features", [(24_000, 0.0)] * 4, SR, ["--quick"]),  # the new user's silent folder (issue 10 defect 1)
        ("latent-features", [(24_000, 0.5)], 44_100, ["--only", "coverage"]),  # DC, resampled on the way in
        ("first_conv-features", [(12_000, -0.25), (3_000, -0.25)], SR, ["--only", "coverage"]),
    ],
)
def test_analyze_refuses_constant_audio_as_learn_does(cli, tmp_path, dictionary, files, rate, args):
    """A recurrent layer's response to silence still moves (its state settles), so the
    vectors alone pass; the corpus-level check learn uses refuses the audio itself."""
    data = tmp_path / "data"
    data.mkdir()
    for i, (n, value) in enumerate(files):
        sf.write(data / f"c{i}.wav", np.full(n, value, np.float32), rate, subtype="FLOAT")
    out = tmp_path / "R"
    res = CliRunner().invoke(cli, ["analyze", dictionary, "--data", str(data), "-o", str(out), *args])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and res.output.splitlines()[-1] == errors[0]
    assert (
        f"every sample of its {len(files)} clips from {data}" in errors[0]
        and f"equals {files[0][1]:g} (silence or a constant signal); nothing was written" in errors[0]
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_one_constant_check_for_user_data_not_for_generated_references(embedded):
    """analysis.data.capture calls the same refuse_constant as learn for --data, and leaves
    the reference sets an analysis generates (flat:N is constant by design) alone."""
    from steerlab import api
    from steerlab.analysis.data import capture
    from steerlab.capture import Corpus

    layer = api.layers(embedded).get("latent")
    flat = Corpus.for_model(embedded, ["flat:1"], clip_seconds=0.5)
    assert len(capture(embedded, layer, flat, "feature", 500, user_data=False).vectors) > 0
    with pytest.raises(NoVarianceError, match=r"every sample of its 1 clips from flat:1 .* equals -?0\.\d+ "):
        capture(embedded, layer, flat, "feature", 500)
    varied = Corpus.for_model(embedded, ["flat:2"], clip_seconds=0.5)  # two levels: the audio varies
    assert len(capture(embedded, layer, varied, "feature", 500).vectors) > 0
