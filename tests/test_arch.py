"""Architecture-only prediction: rates, aliases, main lobes against partial spacing, the
per-layer verdicts, the Spearman agreement, and the ``steerlab arch`` command."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from steerlab import api
from steerlab.arch import ALIASED_CREDIT, Mixture, alias_hz, context, main_lobe_hz, predict, rank_agreement
from steerlab.errors import ArchError
from steerlab.model import LayerInfo

SR = 24_000


@pytest.fixture(scope="module")
def embedded_layers(embedded):
    return list(api.layers(embedded))


def _layer(name: str, hop: int, rf: int, recurrent: bool = False) -> LayerInfo:
    return LayerInfo(name, "conv", name, 8, 1, hop, SR, rf, None, recurrent)


def test_first_conv_main_lobe_is_fs_over_7(embedded):
    first = api.layers(embedded).get("first_conv")
    assert first.kernel_size == 7 and first.receptive_field == 7
    assert main_lobe_hz(first) == pytest.approx(24_000 / 7)  # 3428.57 Hz: SCIENCE.md's "about 3.4 kHz"
    report = predict(api.layers(embedded), [440.0], [1])
    assert report.layers[0].layer.name == first.name
    assert report.layers[0].main_lobe_hz == pytest.approx(24_000 / 7)


def test_latent_rate_nyquist_and_recurrent_flag(embedded, embedded_layers):
    report = predict(embedded_layers, [440.0], [1], model=embedded.name).to_json()
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["latent"]["frame_rate_hz"] == pytest.approx(75.0)
    assert rows["latent"]["nyquist_hz"] == pytest.approx(37.5)
    assert rows["latent"]["main_lobe_upper_bound"] is True  # after the encoder's LSTM
    assert rows["encoder.0.conv"]["main_lobe_upper_bound"] is False
    p = rows["latent"]["predictions"][0]
    assert p["aliased_to"] == pytest.approx(10.0) and p["below_nyquist"] is False and p["survives"] is False
    assert p["score"] <= ALIASED_CREDIT
    # the decoder's last conv runs at 24 kHz again, but 440 Hz passed a 37.5 Hz Nyquist on the way
    last = rows["decoder.15.conv"]
    assert last["path_nyquist_hz"] == pytest.approx(37.5)
    assert last["predictions"][0]["path_below_nyquist"] is False
    assert not last["predictions"][0]["survives_path"]


def test_alias_folds_into_half_rate():
    assert alias_hz(440.0, 75.0) == pytest.approx(10.0)  # 440 mod 75 = 65, reflected to 75 - 65
    assert alias_hz(30.0, 75.0) == pytest.approx(30.0)
    assert alias_hz(37.5, 75.0) == pytest.approx(37.5)
    assert alias_hz(150.0, 75.0) == pytest.approx(0.0)
    assert alias_hz(5000.0, 3000.0) == pytest.approx(1000.0)
    for f in (1.0, 123.4, 999.0, 4321.0):
        assert 0.0 <= alias_hz(f, 600.0) <= 300.0
        assert alias_hz(f, 600.0) == pytest.approx(alias_hz(600.0 * 7 - f, 600.0))


def test_first_layer_resolves_4000_hz_spacing_not_220(embedded_layers):
    first = embedded_layers[:1]
    wide = predict(first, [8000.0], [1], Mixture("harmonic", f0=4000.0)).layers[0].predictions[0]
    narrow = predict(first, [660.0], [2], Mixture("harmonic", f0=220.0)).layers[0].predictions[0]
    assert wide.spacing_hz == pytest.approx(4000.0) and wide.resolvable and wide.survives and wide.score == 1.0
    assert narrow.spacing_hz == pytest.approx(220.0) and not narrow.resolvable and not narrow.survives
    assert narrow.score == pytest.approx(220.0 / (24_000 / 7))


def test_aliased_neighbour_collides_even_when_resolvable():
    # at 600 Hz (Nyquist 300) a 500 Hz partial folds onto a 100 Hz target
    layer = _layer("l", hop=40, rf=118)  # lobe 203 Hz
    p = predict([layer], [100.0], [1], Mixture("harmonic", f0=500.0)).layers[0].predictions[0]
    assert p.below_nyquist and p.resolvable and p.spacing_hz == pytest.approx(400.0)
    assert p.collides and p.alias_separation_hz == pytest.approx(0.0)
    assert not p.survives and p.score == 0.0


def test_inharmonic_spacing_and_infeasible_harmonic():
    ctx = context(1000.0, 4, Mixture(), SR)
    assert ctx.spacing_hz == pytest.approx(1000.0 * math.log(8000 / 50) / 4)
    assert not ctx.exact and ctx.partials_hz == pytest.approx((1000.0 + ctx.spacing_hz,))
    assert context(1000.0, 1000, Mixture(), SR).spacing_hz == 30.0  # floored at min_separation_hz
    below = context(20.0, 2, Mixture(), SR)  # outside the band: distance to the edge plus the edge's gap
    assert below.spacing_hz == pytest.approx(30.0 + 50.0 * math.log(160) / 2)
    p = predict([_layer("l", 1, 7)], [440.0], [4], Mixture("harmonic", f0=110.0)).layers[0].predictions[0]
    assert p.infeasible and p.score is None and p.survives is None  # 440 Hz is the 4th harmonic


def test_report_invariants(embedded_layers):
    report = predict(embedded_layers, [100.0, 440.0, 2000.0, 7000.0], [1, 2, 4, 8, 16])
    assert len(report.layers) == len(embedded_layers)
    for lp in report.layers:
        assert len(lp.predictions) == 4 * 5
        for p in lp.predictions:
            assert 0.0 <= p.score <= 1.0
            assert p.survives == (p.score == 1.0)
            # folding is 1-Lipschitz: aliasing can only bring partials closer
            assert p.alias_separation_hz is None or p.alias_separation_hz <= p.spacing_hz + 1e-9
            if p.below_nyquist and p.alias_separation_hz == p.spacing_hz:
                assert p.collides == (not p.resolvable)
    assert report.get("latent", 440.0, 2).aliased_to == pytest.approx(10.0)
    with pytest.raises(ArchError):
        report.get("latent", 441.0, 2)


def test_bad_inputs_raise():
    layer = [_layer("l", 1, 7)]
    with pytest.raises(ArchError, match="outside"):
        predict(layer, [12_000.0], [1])
    with pytest.raises(ArchError, match="densities"):
        predict(layer, [440.0], [0])
    with pytest.raises(ArchError, match="Did you mean 'harmonic'"):
        Mixture("harmonik")
    with pytest.raises(ArchError, match="f0"):
        Mixture("inharmonic", f0=110.0)
    assert predict(layer, [440.0], [1, 2], Mixture("tone")).densities == (0,)


def test_rank_agreement():
    # ranks with ties: predicted [1, 2.5, 2.5, 4], measured [1, 3, 2, 4]:
    # sum d_p d_m = 4.5, sum d_p^2 = 4.5, sum d_m^2 = 5, rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert rank_agreement([0.1, 0.5, 0.5, 0.9], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(math.sqrt(0.9))
    assert rank_agreement([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_agreement([0.2, 0.4, 0.9], [True, False, False][::-1]) == pytest.approx(math.sqrt(3) / 2)
    assert rank_agreement([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_agreement([0.5, 0.5, 0.5], [1, 2, 3]) is None
    assert rank_agreement([1, 2, 3], [7, 7, 7]) is None
    assert rank_agreement([1.0], [2.0]) is None
    assert rank_agreement([1, None, 2, float("nan"), 3], [1, 5, 2, 3, 3]) == pytest.approx(1.0)
    with pytest.raises(ArchError):
        rank_agreement([1, 2], [1])


@pytest.fixture(scope="module")
def cli():
    from steerlab import cli as cli_module

    return cli_module.get_cli()


def test_cli_json_has_a_row_per_layer(cli, embedded_layers):
    result = CliRunner().invoke(cli, ["arch", "--json", "-t", "440", "-t", "1000", "-d", "1", "-d", "8"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["name"] for r in data["layers"]] == [layer.name for layer in embedded_layers]
    assert all(len(r["predictions"]) == 4 for r in data["layers"])
    assert data["layers"][0]["main_lobe_hz"] == pytest.approx(24_000 / 7)


def test_cli_table(cli, embedded_layers):
    result = CliRunner().invoke(cli, ["arch", "-t", "440", "-d", "1", "-d", "2", "-f", "harmonic", "--f0", "110"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    latent = next(line for line in lines if line.startswith("latent "))
    assert latent.split()[1:4] == ["75.0", "37.5", "8.8*"] and latent.split()[-2:] == ["10.0", "--"]
    names = {layer.name for layer in embedded_layers}
    assert sum(line.split()[0] in names for line in lines if line) == len(embedded_layers)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-m", "no_such_model"], "unknown model 'no_such_model'"),
        (["-t", "20000"], "outside (0, 12000) Hz"),
        (["-f", "harmonik"], "Did you mean 'harmonic'"),
    ],
)
def test_cli_errors_are_one_line(cli, args, fragment):
    result = CliRunner().invoke(cli, ["arch", *args])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output


def test_layers_table_keeps_wide_columns_apart_and_names_the_models_context(cli):
    """tokenlm's 72000-sample, 3000 ms receptive field printed as one token ``720003000.00+``
    under a footnote about an LSTM; each column is now as wide as its widest cell, and the
    footnote is the layer's own (causal attention for the transformer, an LSTM for EnCodec)."""
    result = CliRunner().invoke(cli, ["layers", "-m", "tokenlm_24khz"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    head = lines[1].split()
    row = next(line for line in lines if line.startswith("blocks.0.resid_pre "))
    cells = dict(zip(head[:6] + ["RF smp", "RF ms", "Nyq Hz"], row.split()))
    assert (cells["RF smp"], cells["RF ms"], cells["Nyq Hz"]) == ("72000", "3000.00+", "37.5")
    assert lines[-1].startswith("+ causal self-attention") and "LSTM" not in result.output
    enc = CliRunner().invoke(cli, ["layers", "-m", "tiny_encodec_24khz"]).output.splitlines()
    assert enc[-1].startswith("+ after an LSTM")
    arch = CliRunner().invoke(cli, ["arch", "-m", "tokenlm_24khz", "-t", "440", "-d", "1"]).output
    assert arch.splitlines()[-1].startswith("* causal self-attention") and "LSTM" not in arch


def test_format_table_columns_never_touch():
    from steerlab.cli.table import format_table

    lines = format_table(("a", "n"), [("x", "1"), ("y", "123456789012")], left=1)
    assert lines == ["a" + " " * 13 + "n", "x" + " " * 13 + "1", "y  123456789012"]
    assert LayerInfo("l", "conv", "m", 1, 1, 1, 24_000, 7, recurrent=True).context_note.startswith("the context")
    assert LayerInfo("l", "conv", "m", 1, 1, 1, 24_000, 7).context_note == ""
