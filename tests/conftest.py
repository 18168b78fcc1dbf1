"""Shared fixtures: the embedded model, a random-weights codec, synthetic audio."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedded():
    from steerlab import api

    return api.load_model()


@pytest.fixture(scope="session")
def random_24k():
    """The official 24 kHz architecture at random initialisation (no download)."""
    from steerlab import plugins
    from steerlab.builtins.encodec.codec import OFFICIAL_24KHZ
    from steerlab.builtins.encodec.loaders import random_codec

    model = random_codec("encodec_24khz", OFFICIAL_24KHZ, seed=1)
    model.layer_registry = plugins.layers_for(model)
    return model


def chord(seconds: float = 1.0, sr: int = 24_000, seed: int = 0) -> np.ndarray:
    from steerlab.synth import ClipSpec, synthesize

    return synthesize(ClipSpec("chord", seed, sr, seconds))[None]


@pytest.fixture
def clip():
    return chord()


# Optional inputs (Debian's music packages, the render extra): a test that needs one skips with the
# reason when it is absent on a developer's machine, but under CI (CI=true), where .ci/run installs
# them, it runs and fails instead, so a missing install step cannot hide behind a skip.
STRICT_OPTIONAL = os.environ.get("CI", "").lower() == "true"


def import_or_skip(name: str, reason: str | None = None):
    """``pytest.importorskip``, except under CI (:data:`STRICT_OPTIONAL`), where a missing optional
    module is an error: CI installs every extra the tests use, so a skip there would hide a failure."""
    if STRICT_OPTIONAL:
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name, reason=reason)


BATTERY_TOML = """
[grid]
strengths = [1.0]
subtract_strengths = [1.0]
methods = ["diffmeans", "random"]
[stimuli]
train_seeds = 2
test_seeds = {test_seeds}
[controls]
positive_models = {controls}
[run]
max_batch = {max_batch}
probe_frames = 16
bootstrap = 100
"""


def battery_toml(controls: str = "[]", test_seeds: int = 3, max_batch: int = 4) -> str:
    """The tiny battery grid the steerability tests share (one strength, diffmeans and the null,
    2 training pairs): ``controls`` the ``positive_models`` TOML value (``'["stft_24khz"]'``)."""
    return BATTERY_TOML.format(controls=controls, test_seeds=test_seeds, max_batch=max_batch)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for a test module, shut down after it (one already initialized,
    by another module or a notebook, is used and left running); skips without the ray extra."""
    ray = import_or_skip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.cluster_resources()
    if started:
        ray.shutdown()


def needs(available: bool, reason: str):
    """A skip mark for an absent optional input, inactive under CI (see STRICT_OPTIONAL)."""
    return pytest.mark.skipif(not available and not STRICT_OPTIONAL, reason=reason)
