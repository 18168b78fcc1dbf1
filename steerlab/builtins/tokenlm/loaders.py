"""Loading the token transformer: the shipped checkpoint, a run folder, or random weights.

A weights folder (what ``steerlab train tokenlm`` exports) holds ``config.json``
(format ``steerlab-tokenlm`` version 1: architecture, default sampling settings,
training record, and the weights hash of the codec whose tokens it was trained
on) and ``model.safetensors`` (the transformer only; the codec is loaded from
its own plugin). Tokens mean nothing under another codec, so a checkpoint whose
codec hash differs from the installed codec's is refused unless the loader is
given ``allow_codec_mismatch=True``, which downgrades the refusal to a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from steerlab import schema
from steerlab.errors import ModelLoadError
from steerlab.model import AudioModel, LoadOptions

from .model import Sampling, TokenLMAudioModel
from .transformer import TokenLMConfig, TokenTransformer

if TYPE_CHECKING:
    from steerlab.builtins.encodec.model import EncodecAudioModel

NAME = "tokenlm_24khz"
FORMAT = "steerlab-tokenlm"
VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights" / NAME
RETRAIN = (
    "OMP_NUM_THREADS=1 steerlab train tokenlm -o runs/tokenlm_24khz && "
    f"cp runs/tokenlm_24khz/{{model.safetensors,config.json,curve.jsonl}} {WEIGHTS_DIR}/"
)


def load_codec(extra: dict) -> EncodecAudioModel:
    """The embedded codec (or a codec run folder given as ``codec_checkpoint``)."""
    from steerlab.builtins.encodec.loaders import load_embedded

    path = extra.get("codec_checkpoint")
    return load_embedded(LoadOptions(checkpoint=Path(path) if path else None)).eval()


# the sampling defaults the weights were trained and shipped with (every field of Sampling)
SAMPLING_SCHEMA = schema.obj(
    {
        "n_frames": schema.integer(1),
        "temperature": schema.number(0),
        "top_k": schema.integer(1),
        "seed": schema.integer(),
    }
)


def read_config(folder: Path) -> dict:
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise ModelLoadError(f"{folder} is not a steerlab tokenlm folder (needs config.json and model.safetensors)")
    return schema.read_json(
        config_path,
        {
            "transformer": schema.mapping(),
            "codec": schema.obj({"weights_sha256": schema.nullable(schema.string())}),
            "sampling": SAMPLING_SCHEMA,
        },
        ModelLoadError,
        format=FORMAT,
        versions=(VERSION,),
    )


def check_codec(meta: dict, codec: AudioModel, source: Path, allow_mismatch: bool) -> None:
    trained = meta.get("codec", {}).get("weights_sha256")
    current = codec.weights_hash()
    if trained == current:
        return
    message = (
        f"{source} was trained on tokens of codec weights {str(trained)[:12]} but the installed "
        f"{codec.name} is {current[:12]}; retrain it: {RETRAIN}"
    )
    if not allow_mismatch:
        raise ModelLoadError(message)
    warnings.warn(message, stacklevel=3)


def load_folder(folder: Path, options: LoadOptions) -> TokenLMAudioModel:
    meta = read_config(folder)
    codec = load_codec(options.extra)
    check_codec(meta, codec, folder, bool(options.extra.get("allow_codec_mismatch", False)))
    cfg = schema.build(
        TokenLMConfig,
        meta["transformer"],
        folder / "config.json",
        "transformer",
        ModelLoadError,
        TokenLMConfig.from_json,
    )
    transformer = TokenTransformer(cfg)
    try:
        transformer.load_state_dict(schema.read_tensors(folder / "model.safetensors", ModelLoadError))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ModelLoadError(
            f"weights in {folder} do not fit their config: {lines[1] if len(lines) > 1 else lines[0]}"
        ) from None
    sampling = Sampling.from_options(
        schema.build(Sampling, meta["sampling"], folder / "config.json", "sampling", ModelLoadError), options.extra
    )
    return TokenLMAudioModel(NAME, transformer.eval(), codec, sampling, meta)


def random_tokenlm(
    options: LoadOptions = LoadOptions(), cfg: TokenLMConfig = TokenLMConfig(), seed: int = 0
) -> TokenLMAudioModel:
    """The architecture at seeded random initialisation, over the installed codec."""
    codec = load_codec(options.extra)
    torch.manual_seed(seed)
    transformer = TokenTransformer(cfg).eval()
    sampling = Sampling.from_options(Sampling(), options.extra)
    return TokenLMAudioModel(NAME, transformer, codec, sampling, {"random_init": True, "seed": seed})


def load_tokenlm(options: LoadOptions) -> TokenLMAudioModel:
    options.check_extra(NAME, ("n_frames", "temperature", "top_k", "seed", "codec_checkpoint", "allow_codec_mismatch"))
    if options.random_init:
        return random_tokenlm(options)
    folder = Path(options.checkpoint) if options.checkpoint is not None else WEIGHTS_DIR
    if options.checkpoint is None and not (WEIGHTS_DIR / "model.safetensors").is_file():
        raise ModelLoadError(f"tokenlm weights missing from the installation: {WEIGHTS_DIR}; train them: {RETRAIN}")
    return load_folder(folder, options)
