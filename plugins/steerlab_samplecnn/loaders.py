"""Loading SampleCNN weights: the shipped checkpoint, another run folder, or random init.

A weights folder is what ``steerlab train samplecnn`` exports: ``config.json``
(format ``steerlab-samplecnn`` version 1, the architecture, training record and
weights hash) beside ``model.safetensors``. The shipped one lives inside this
package, so loading is offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from steerlab.errors import ModelLoadError
from steerlab.model import LoadOptions

from .model import SampleCNN, SampleCNNConfig
from .train import FORMAT, VERSION

SHIPPED_NAME = "samplecnn_24khz"
SHIPPED_DIR = Path(__file__).parent / "weights" / SHIPPED_NAME
DEFAULT_CONFIG = SampleCNNConfig()


def load_artifact(folder: Path, name: str = SHIPPED_NAME) -> SampleCNN:
    """A SampleCNN saved by ``steerlab train samplecnn`` (a run folder or the shipped weights)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise ModelLoadError(f"{folder} is not a steerlab SampleCNN folder (needs config.json and model.safetensors)")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{config_path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ModelLoadError(
            f"{config_path}: unsupported format {meta.get('format')!r} version {meta.get('version')!r} "
            f"(this steerlab reads {FORMAT} version {VERSION})"
        )
    try:
        cfg = SampleCNNConfig.from_json(meta["samplecnn"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{config_path}: invalid architecture record: {exc}") from None
    model = SampleCNN(name, cfg)
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise ModelLoadError(f"weights in {weights} do not fit the architecture in {config_path}: "
                             f"{lines[1] if len(lines) > 1 else lines[0]}"[:300]) from None
    model.training_record = meta
    return model.eval()


def random_samplecnn(name: str = SHIPPED_NAME, cfg: SampleCNNConfig = DEFAULT_CONFIG, seed: int = 0) -> SampleCNN:
    """The architecture at seeded random initialisation (baselines, layer tables)."""
    torch.manual_seed(seed)
    return SampleCNN(name, cfg).eval()


def load_shipped(options: LoadOptions) -> SampleCNN:
    options.check_extra(SHIPPED_NAME)
    if options.random_init:
        return random_samplecnn()
    if options.checkpoint is not None:
        return load_artifact(Path(options.checkpoint))
    if not (SHIPPED_DIR / "model.safetensors").is_file():
        raise ModelLoadError(f"shipped SampleCNN weights missing from the installation: {SHIPPED_DIR}; reinstall steerlab")
    return load_artifact(SHIPPED_DIR)
