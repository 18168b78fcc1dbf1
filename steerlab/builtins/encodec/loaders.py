"""Loading EnCodec weights: official checkpoints and the embedded model.

Official weights go through encodec's own mechanism: the ``torch.hub`` cache, looked in first,
then a download when the server answers (an offline machine gets one error line, no network
chatter); ``--checkpoint PATH`` loads a local file in the official
format (a plain state dict, read with ``weights_only=True``). The embedded model's
weights ship inside this package as safetensors beside their ``config.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from steerlab import schema
from steerlab.errors import ModelLoadError
from steerlab.model import LoadOptions

from .codec import EMBEDDED, OFFICIAL_24KHZ, OFFICIAL_48KHZ, CodecConfig, build_codec
from .model import EncodecAudioModel

OFFICIAL = {
    "encodec_24khz": (OFFICIAL_24KHZ, "encodec_24khz-d7cc33bc.th"),
    "encodec_48khz": (OFFICIAL_48KHZ, "encodec_48khz-7e698e3e.th"),
}
ROOT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"
EMBEDDED_NAME = "tiny_encodec_24khz"
EMBEDDED_DIR = Path(__file__).parent / "weights" / EMBEDDED_NAME
# dictionaries learned on the shipped weights (first conv and latent, features and archetypes)
EMBEDDED_DICTIONARIES = Path(__file__).parent / "dictionaries"
OFFLINE_ENV = ("STEERLAB_OFFLINE", "HF_HUB_OFFLINE")


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]  # an empty file gives EOFError('')
        raise ModelLoadError(f"cannot read checkpoint {path}: {reason}") from None
    if isinstance(state, dict) and "best_state" in state:  # encodec training checkpoints
        state = state["best_state"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"checkpoint {path} is not a state dict")
    return state


def _load_into(codec: torch.nn.Module, state: dict, source: str) -> None:
    try:
        codec.load_state_dict(state)
    except RuntimeError as exc:
        # torch's first line only says "Error(s) in loading state_dict for X:"; the next one says what
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = lines[1] if len(lines) > 1 else lines[0]
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        raise ModelLoadError(f"weights in {source} do not fit this architecture: {detail}") from None


def load_official(name: str, options: LoadOptions) -> EncodecAudioModel:
    options.check_extra(name)
    cfg, filename = OFFICIAL[name]
    if options.random_init:
        return random_codec(name, cfg)
    codec = build_codec(cfg)
    if options.checkpoint is not None:
        _load_into(codec, _read_state_dict(Path(options.checkpoint)), str(options.checkpoint))
        return EncodecAudioModel(name, cfg, codec)
    cached = hub_checkpoint_dir() / filename
    if cached.is_file():
        _load_into(codec, _read_state_dict(cached), str(cached))
        return EncodecAudioModel(name, cfg, codec)
    missing = (
        f"pretrained weights for {name} are not available offline: expected {filename} in "
        f"{hub_checkpoint_dir()}; download it from {ROOT_URL}{filename} there, or pass checkpoint, "
        "a local copy (random_init needs no weights: enough for `steerlab layers` and `steerlab arch`)"
    )
    if any(os.environ.get(var) for var in OFFLINE_ENV) or not _reachable(ROOT_URL + filename):
        raise ModelLoadError(missing, parameter=("checkpoint", "random_init"))
    _download(ROOT_URL + filename, cached, missing)
    _load_into(codec, _read_state_dict(cached), str(cached))
    return EncodecAudioModel(name, cfg, codec)


#: seconds the server of the official weights has to answer before the weights count as unavailable
REACH_TIMEOUT_S = 10.0


def _reachable(url: str) -> bool:
    """Whether ``url`` answers a HEAD request within :data:`REACH_TIMEOUT_S` (prints nothing).

    Asked before downloading, so an offline machine gets the one "not available" line at once
    instead of torch.hub's ``Downloading: ...`` line (on stdout) before a failure."""
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=REACH_TIMEOUT_S).close()
    except (OSError, ValueError):  # URLError, timeouts and refused connections are OSErrors
        return False
    return True


def _download(url: str, dest: Path, missing: str) -> None:
    """Fetch ``url`` into the torch hub cache file ``dest`` with torch.hub's own downloader (a
    temporary file renamed when complete, its SHA-256 checked against the hash prefix in the
    file name, a progress bar on stderr). Raises :class:`ModelLoadError` (``missing``, with the
    reason first) when the download fails; nothing is left at ``dest`` then."""
    import re

    match = re.search(r"-([a-f0-9]+)\.", dest.name)  # torch.hub's HASH_REGEX
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dest), match.group(1) if match else None, progress=True)
    except Exception as exc:  # network, disk or hash mismatch: one line either way
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(
            f"download failed ({reason}); {missing}", parameter=("checkpoint", "random_init")
        ) from None


def load_artifact(folder: Path, name: str | None = None) -> EncodecAudioModel:
    """A codec saved by ``steerlab train codec`` (``config.json`` + ``model.safetensors``)."""
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise ModelLoadError(f"{folder} is not a steerlab codec folder (needs config.json and model.safetensors)")
    meta = schema.read_json(
        config_path,
        {"codec": schema.mapping(), "name": schema.optional(schema.string(True))},
        ModelLoadError,
        format="steerlab-codec",
        versions=(1,),
    )
    cfg = schema.build(CodecConfig, meta["codec"], config_path, "codec", ModelLoadError, CodecConfig.from_json)
    codec = build_codec(cfg)
    _load_into(codec, schema.read_tensors(weights, ModelLoadError), str(weights))
    model = EncodecAudioModel(name or meta.get("name", EMBEDDED_NAME), cfg, codec)
    model.training_record = meta
    return model


def load_embedded(options: LoadOptions) -> EncodecAudioModel:
    options.check_extra(EMBEDDED_NAME)
    if options.random_init:
        return random_codec(EMBEDDED_NAME, EMBEDDED)
    if options.checkpoint is not None:
        return load_artifact(Path(options.checkpoint), EMBEDDED_NAME)
    if not (EMBEDDED_DIR / "model.safetensors").is_file():
        raise ModelLoadError(f"embedded weights missing from the installation: {EMBEDDED_DIR}; reinstall steerlab")
    model = load_artifact(EMBEDDED_DIR, EMBEDDED_NAME)
    model.dictionaries_dir = EMBEDDED_DICTIONARIES
    return model


def random_codec(name: str, cfg: CodecConfig = EMBEDDED, seed: int = 0) -> EncodecAudioModel:
    """The architecture at random initialisation (baselines and benchmarks)."""
    torch.manual_seed(seed)
    return EncodecAudioModel(name, cfg)
