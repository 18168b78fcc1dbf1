"""The Python API a notebook user needs, run as the README's "Python API" section shows it:
load a model, capture a layer, build a direction from an array, intervene, load a shipped
dictionary and read its decoder. ``EXAMPLE`` is that section's code, run verbatim."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import steerlab
from steerlab.errors import DictionaryError, DirectionError

README = Path(__file__).resolve().parents[1] / "README.md"

EXAMPLE = """\
import numpy as np
import steerlab

model = steerlab.load_model()  # the embedded tiny_encodec_24khz: 24 kHz, mono
sr = model.sample_rate
t = np.arange(sr) / sr  # one second
low = 0.1 * np.sin(2 * np.pi * 220 * t)
with_880 = (low + 0.1 * np.sin(2 * np.pi * 880 * t))[None]  # [channels, samples]
without_880 = low[None]

# the "latent" layer's activations, one [channels, frames] array per input
a_with, a_without = steerlab.capture_activations(model, [with_880, without_880], "latent")

# a direction from any array: here the difference of the two inputs' mean activations
direction = steerlab.Direction(a_with.mean(axis=1) - a_without.mean(axis=1))
print(direction.provenance["source"], direction.provenance["sha256"][:12])  # array, and which one

# add it to the input without the 880 Hz partial, and measure what changed there
spec = steerlab.InterventionSpec(
    layer="latent", direction=direction, intervention="add", strength=steerlab.Strength(1.0)
)
result = steerlab.intervene(model, [without_880], spec, target_hz=[880.0])[0]
print(result.scores["spectral"]["targets"][0]["gain_db"])  # dB gained at 880 Hz

# a dictionary shipped with the model, and its decoder matrix
dictionary = steerlab.load_dictionary("latent-features")
print(dictionary.layer, tuple(dictionary.decoder.shape))  # latent (n_latents, channels)
"""


@pytest.fixture(scope="module")
def example() -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(EXAMPLE, "README.md (Python API)", "exec"), namespace)
    return namespace


def test_the_example_captures_the_layer_as_arrays(example):
    model, a_with, a_without = example["model"], example["a_with"], example["a_without"]
    layer = steerlab.layers(model).get("latent")
    assert isinstance(a_with, np.ndarray) and a_with.dtype == np.float32
    assert a_with.shape == a_without.shape == (layer.channels, layer.frames_for(model.sample_rate)) == (64, 75)
    assert not np.array_equal(a_with, a_without)  # the 880 Hz partial is in the activations


def test_the_example_direction_records_the_array_it_was_given(example):
    direction, a_with, a_without = example["direction"], example["a_with"], example["a_without"]
    expected = a_with.mean(axis=1) - a_without.mean(axis=1)
    assert np.array_equal(direction.vector, expected) and direction.vector.dtype == np.float32
    assert direction.provenance == {
        "source": "array",
        "note": "given as an array by the caller",
        "array_shape": [64],
        "dtype": "float32",
        "sha256": hashlib.sha256(expected.tobytes()).hexdigest(),
    }
    recorded = example["result"].record["direction"]  # what every result (and scores.json) keeps
    assert recorded["sha256"] == direction.provenance["sha256"] and recorded["norm"] == pytest.approx(direction.norm)


def test_the_example_intervention_creates_the_partial(example):
    result = example["result"]
    assert result.baseline.shape == result.patched.shape == (1, 24_000)
    gain = result.scores["spectral"]["targets"][0]["gain_db"]
    assert gain == pytest.approx(42.6, abs=1.0)  # measured: the direction carries the 880 Hz partial
    # the same spec at strength 0 changes nothing: the gain comes from the direction
    quiet = steerlab.InterventionSpec(layer="latent", direction=example["direction"], strength=steerlab.Strength(0.0))
    unchanged = steerlab.intervene(example["model"], [example["without_880"]], quiet, target_hz=[880.0])[0]
    assert np.array_equal(unchanged.baseline, unchanged.patched)


def test_the_example_dictionary_decoder_is_the_decoder_in_activation_units(example):
    d = example["dictionary"]
    assert (d.model, d.layer, d.target) == ("tiny_encodec_24khz", "latent", "feature")
    decoder = d.decoder
    assert decoder.shape == (d.config.size, d.config.width) == (128, 64) and decoder.dtype == torch.float32
    # decode(codes) = codes @ decoder + decode(0), and the rows point along the unit directions
    codes = torch.zeros(3, 128)
    codes[0, 5], codes[1, 17], codes[2, 100] = 2.0, 0.5, 1.25
    offset = d.sae.decode(torch.zeros(1, 128))
    assert torch.allclose(d.sae.decode(codes) - offset, codes @ decoder, atol=1e-5)
    assert torch.allclose(decoder / decoder.norm(dim=1, keepdim=True), d.directions, atol=1e-6)
    assert float(decoder.norm(dim=1).mean()) == pytest.approx(float(d.sae.scale), rel=1e-5)


def test_the_example_prints_what_its_comments_say(example, capsys):
    exec(compile(EXAMPLE, "README.md (Python API)", "exec"), {"__name__": "readme_example"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"array {example['direction'].provenance['sha256'][:12]}"
    assert float(lines[1]) == pytest.approx(42.6, abs=1.0)
    assert lines[2] == "latent (128, 64)"


def test_the_readme_shows_this_example():
    text = README.read_text()
    assert "## Python API" in text
    assert EXAMPLE in text, "README's Python API example must be tests/test_public_api.py's EXAMPLE, verbatim"


# -- the pieces, one by one ---------------------------------------------------------------------


def test_direction_takes_numpy_torch_and_lists_and_keeps_a_given_provenance():
    assert steerlab.Direction(torch.tensor([3.0, 4.0])).norm == 5.0
    as_list = steerlab.Direction([0, 2])
    assert as_list.vector.dtype == np.float64 and as_list.provenance["dtype"] == "float64"
    assert torch.equal(as_list.unit(), torch.tensor([0.0, 1.0]))
    given = steerlab.Direction(np.ones(3), {"source": "probe", "run": "x"})
    assert given.provenance == {"source": "probe", "run": "x"}
    other = steerlab.Direction(np.ones(3) * 2)
    assert other.provenance["sha256"] != steerlab.Direction(np.ones(3)).provenance["sha256"]


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros(4), "must be non-zero: all 4 entries are 0"),  # says which of the two it is
        ([1.0, float("nan")], "must be finite: 1 of its 2 entries are NaN or infinite"),
        (["a", "b"], "vector must be an array of numbers"),
        (np.ones((2, 3)), "shape (2, 3)"),
        (5.0, "shape ()"),
    ],
)
def test_direction_refuses_what_is_not_a_direction(bad, words):
    with pytest.raises(DirectionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        steerlab.Direction(bad)


def test_load_dictionary_by_folder_by_name_and_for_a_model():
    model = steerlab.load_model()
    folder = model.shipped_dictionaries()["first_conv-features"]
    by_folder = steerlab.load_dictionary(folder)  # no model needed for a folder
    by_name = steerlab.load_dictionary("first_conv-features", model=model)
    by_model_name = steerlab.load_dictionary("first_conv-features", model="tiny_encodec_24khz")
    assert torch.equal(by_folder.decoder, by_name.decoder) and torch.equal(by_name.decoder, by_model_name.decoder)
    layer = steerlab.layers(model).get("first_conv")
    assert (by_folder.layer, by_folder.decoder.shape[1]) == (layer.name, layer.channels)


def test_load_dictionary_refuses_another_models_dictionary_and_suggests_names():
    folder = steerlab.load_model().shipped_dictionaries()["latent-features"]
    with pytest.raises(DictionaryError, match="learned on 'tiny_encodec_24khz', not 'filterbank_24khz'"):
        steerlab.load_dictionary(folder, model="filterbank_24khz")
    with pytest.raises(DictionaryError, match="Did you mean 'latent-features'"):
        steerlab.load_dictionary("latent-feature")


def test_every_public_name_resolves_and_is_documented():
    for name in steerlab.__all__:
        obj = getattr(steerlab, name)
        assert (obj.__doc__ or "").strip(), f"steerlab.{name} has no docstring"
    assert set(steerlab.__all__) <= set(dir(steerlab))
    with pytest.raises(AttributeError):
        steerlab.no_such_name  # noqa: B018


def _params(call) -> tuple[str, ...]:
    """The parameters named by the steerlab error ``call()`` raises (a Python error fails the test)."""
    with pytest.raises(steerlab.SteerlabError) as info:
        call()
    return info.value.parameters


def test_wrong_types_at_the_public_api_raise_steerlab_errors_naming_the_parameter():
    """New-user defect: a wrong type reached Python internals (AttributeError, TypeError)."""
    from steerlab.errors import ConfigError, UnknownNameError

    model = steerlab.load_model()
    layer = steerlab.layers(model).get("latent")
    with pytest.raises(ConfigError, match=r"steerlab.layers\(model\).get\('latent'\)") as info:
        steerlab.channel_direction(3, "latent")
    assert info.value.parameters == ("layer",)
    assert _params(lambda: steerlab.channel_direction("3", layer)) == ("channel",)
    assert steerlab.channel_direction(np.int64(3), layer).provenance == {"source": "channel", "channel": 3}
    spec = steerlab.InterventionSpec(layer="latent", direction=steerlab.channel_direction(3, layer))
    wave = [np.zeros((1, 2400), np.float32)]
    for bad in (["abc"], [float("nan")], 440.0, "440"):
        assert _params(lambda bad=bad: steerlab.intervene(model, wave, spec, target_hz=bad)) == ("target_hz",)
    assert _params(lambda: steerlab.intervene(model, wave, spec, max_batch="8")) == ("max_batch",)
    assert _params(lambda: steerlab.Strength("0.5")) == ("alpha",)
    assert _params(lambda: steerlab.Strength(0.5, "abs")) == ("mode",)
    assert _params(lambda: steerlab.Span("0.1")) == ("start_s",)
    assert _params(lambda: steerlab.Span(0.0, "1")) == ("end_s",)
    assert _params(lambda: steerlab.Span(fade_in=1.5)) == ("fade_in",)
    assert _params(lambda: steerlab.Direction([1.0], provenance="probe")) == ("provenance",)
    assert _params(lambda: steerlab.InterventionSpec(layer=3)) == ("layer",)
    for name, bad in (("direction", [1.0]), ("strength", 0.5), ("span", (0, 1)), ("options", [])):
        assert _params(lambda name=name, bad=bad: steerlab.InterventionSpec(layer="latent", **{name: bad})) == (name,)
    assert _params(lambda: steerlab.load_direction(3)) == ("path",)
    assert _params(lambda: steerlab.load_dictionary(3)) == ("name_or_path",)
    for bad in ("abc", 3, np.zeros(2400, np.float32), [np.zeros((2, 2400), np.float32)]):
        assert _params(lambda bad=bad: steerlab.intervene(model, bad, spec)) == ("waves",)
        assert _params(lambda bad=bad: steerlab.capture_activations(model, bad, "latent")) == ("waves",)
    # an unknown intervention type is refused when the spec is built, naming the parameter
    with pytest.raises(UnknownNameError, match="unknown intervention 'ad'. Did you mean 'add'") as unknown:
        steerlab.InterventionSpec(layer="latent", intervention="ad")
    assert unknown.value.parameters == ("intervention",)
