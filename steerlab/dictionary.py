"""Dictionaries on disk: a trained SAE plus what it was trained on.

A dictionary is a folder::

    config.json           format name and version, model, weights hash, layer, kind,
                          width, size, k, normalisation statistics, data, metrics, versions
    weights.safetensors   W_enc [width, size], b_enc [size], W_dec [size, width], b_dec [width],
                          center [width], scale [], data_mean [width] (float64)

``kind`` is ``"feature"`` (an SAE over response vectors ``r_t``) or ``"archetype"``
(an SAE over generators ``g_t = r_{t+1} - r_t``; not the "archetypal SAE" of the
SAE literature). Folders are written into a temporary folder beside the target
and renamed into place, so a crash never leaves half a dictionary; ``load``
refuses unknown formats and versions and checks the weights against the hash in
``config.json``.

``export_saelens`` writes the SAELens layout (``cfg.json`` + ``sae_weights.safetensors``)
with the normalisation folded into the weights, so SAELens' plain forward on raw
activations reproduces :meth:`SparseAutoencoder.forward`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from steerlab.artifacts import file_sha256, normal_permissions
from steerlab.artifacts import versions as library_versions
from steerlab.errors import OutputError, SteerlabError
from steerlab.sae import DataStats, SAEConfig, SparseAutoencoder

FORMAT = "steerlab-dictionary"
VERSION = 1
SUPPORTED_VERSIONS = (1,)
KINDS = ("feature", "archetype")
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"
SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "center", "scale")

GAMMA_DEFINITION = ("gamma = ||mean|| / sqrt(sum_i var_i), over the training data before normalisation; "
                    "null when the data has no spread")
KIND_NOTE = ("feature: SAE over response vectors r_t; archetype: SAE over generators g_t = r_{t+1} - r_t "
             "(not the 'archetypal SAE' of the SAE literature)")


class DictionaryError(SteerlabError):
    """A dictionary folder that cannot be read: not one, an unknown version, or damaged."""


@dataclass
class Dictionary:
    """A trained SAE and its provenance.

    ``stats`` and ``data_hash`` default to what :func:`steerlab.sae.train_sae` measured
    (``sae.stats``); ``metrics`` is the metrics dict it returned.
    """

    sae: SparseAutoencoder
    model: str
    layer: str
    kind: str = "feature"
    weights_hash: str | None = None
    data_description: str = ""
    data_hash: str | None = None
    stats: DataStats | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    data_manifest: dict[str, Any] | None = None  # what the corpus held (steerlab.capture.Manifest), if known

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.stats is None:
            self.stats = self.sae.stats
        if self.data_hash is None and self.stats is not None:
            self.data_hash = self.stats.sha256

    @property
    def config(self) -> SAEConfig:
        return self.sae.config

    @property
    def directions(self) -> torch.Tensor:
        """Unit directions ``[size, width]`` in the layer's activation space."""
        return self.sae.directions

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        stats = self.stats.to_json() if self.stats is not None else None
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "weights_hash": self.weights_hash,
            "layer": self.layer,
            "kind": self.kind,
            "kind_note": KIND_NOTE,
            "architecture": cfg.kind_of_sae,
            "width": cfg.width,
            "size": cfg.size,
            "k": cfg.k if cfg.kind_of_sae == "topk" else None,
            "seed": cfg.seed,
            "sae": cfg.to_dict(),
            "normalization": {"center": cfg.center, "normalize": cfg.normalize, "scale": float(self.sae.scale),
                              "stats": stats, "gamma_definition": GAMMA_DEFINITION},
            "data": {"description": self.data_description, "sha256": self.data_hash,
                     **({"manifest": _json_safe(self.data_manifest)} if self.data_manifest is not None else {})},
            "metrics": _json_safe(self.metrics),
            "versions": self.versions,
        }


def _json_safe(obj: Any) -> Any:
    """JSON has no NaN or infinity: undefined numbers are written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


@contextmanager
def _atomic_folder(folder: Path, overwrite: bool, marker: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; on success it replaces ``folder``.

    An existing ``folder`` is replaced only with ``overwrite`` and only when it is empty or
    holds ``marker`` (a folder this module wrote), so a typo cannot delete unrelated files.
    """
    folder = Path(folder)
    parent = folder.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {folder}: {parent} is not an existing folder")
    if folder.exists():
        if not overwrite:
            raise OutputError(f"{folder} already exists; pass overwrite=True to replace it")
        if not folder.is_dir() or (any(folder.iterdir()) and not (folder / marker).is_file()):
            raise OutputError(f"not replacing {folder}: it is not an empty folder or one written by steerlab")
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror}") from exc
    try:
        normal_permissions(work, directory=True)
        yield work
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=parent))
            os.replace(folder, old)  # onto an empty folder: allowed, and atomic
            os.replace(work, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def save(d: Dictionary, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``d`` as a dictionary folder (atomically); return its path."""
    from safetensors.torch import save_file

    folder = Path(folder)
    sd = d.sae.state_dict()
    tensors = {name: sd[name].detach().contiguous().clone() for name in _TENSORS}
    if d.stats is not None:
        tensors["data_mean"] = d.stats.mean.detach().to(torch.float64).contiguous().clone()
    with _atomic_folder(folder, overwrite, CONFIG_FILE) as work:
        save_file(tensors, str(work / WEIGHTS_FILE), metadata={"format": FORMAT, "version": str(VERSION)})
        doc = d.to_json()
        doc["weights"] = {"file": WEIGHTS_FILE, "sha256": file_sha256(work / WEIGHTS_FILE)}
        (work / CONFIG_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        for p in work.iterdir():
            normal_permissions(p)
    return folder


def load(folder: str | Path) -> Dictionary:
    """Read a dictionary folder; raise :class:`DictionaryError` with a one-line reason if it can't."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise DictionaryError(f"{folder} is not a steerlab dictionary: no {CONFIG_FILE}")
    try:
        doc = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DictionaryError(f"{cfg_path} is unreadable: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise DictionaryError(f"{folder} is not a steerlab dictionary (format {found!r}, expected {FORMAT!r})")
    version = doc.get("version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise DictionaryError(f"{folder} has dictionary format version {version!r}; this steerlab reads version"
                              f" {', '.join(map(str, SUPPORTED_VERSIONS))} (upgrade steerlab or re-train)")
    try:
        config = SAEConfig.from_dict(doc["sae"])
        weights_name = doc["weights"]["file"]
        expected_hash = doc["weights"]["sha256"]
        norm, data = doc["normalization"], doc["data"]
        model, layer, kind = doc["model"], doc["layer"], doc["kind"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DictionaryError(f"{cfg_path} is damaged: {type(exc).__name__}: {exc}") from exc
    weights_path = folder / weights_name
    if not weights_path.is_file():
        raise DictionaryError(f"{folder} is missing its weights file {weights_name}")
    if file_sha256(weights_path) != expected_hash:
        raise DictionaryError(f"{weights_path} does not match the sha256 recorded in {CONFIG_FILE}"
                              " (damaged or replaced)")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise DictionaryError(f"{weights_path} is unreadable: {exc}") from exc
    missing = [name for name in _TENSORS if name not in tensors]
    if missing:
        raise DictionaryError(f"{weights_path} lacks tensors: {', '.join(missing)}")
    sae = SparseAutoencoder(config)
    try:
        sae.load_state_dict({name: tensors[name] for name in _TENSORS})
    except RuntimeError as exc:
        raise DictionaryError(f"{weights_path} does not fit its config: {str(exc).splitlines()[0]}") from exc
    sae.eval()
    stats = None
    if norm.get("stats") is not None and "data_mean" in tensors:
        s = norm["stats"]
        stats = DataStats(s["n_vectors"], tensors["data_mean"], s["mean_norm"], s["std_norm"], s["gamma"],
                          s["data_sha256"])
    sae.stats = stats
    try:
        return Dictionary(sae=sae, model=model, layer=layer, kind=kind, weights_hash=doc.get("weights_hash"),
                          data_description=data.get("description", ""), data_hash=data.get("sha256"),
                          stats=stats, metrics=doc.get("metrics", {}), versions=doc.get("versions", {}),
                          data_manifest=data.get("manifest"))
    except ValueError as exc:
        raise DictionaryError(f"{cfg_path} is damaged: {exc}") from exc


def saelens_tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """Weights for SAELens' forward on RAW activations, normalisation folded in.

    With ``z = (x - center) / scale``: ``(z - b_dec) @ W_enc = (x - B) @ (W_enc / scale)``
    and ``center + scale * (f @ W_dec + b_dec) = f @ (scale * W_dec) + B`` for
    ``B = center + scale * b_dec``; ``b_enc`` is unchanged. (SAELens' decoder rows are
    then of norm ``scale``, not 1.) Computed in float64, stored as float32.
    """
    s = float(sae.scale)
    w_enc, w_dec = sae.W_enc.detach().double(), sae.W_dec.detach().double()
    b_dec = sae.center.double() + s * sae.b_dec.detach().double()
    return {"W_enc": (w_enc / s).float().contiguous(), "W_dec": (w_dec * s).float().contiguous(),
            "b_enc": sae.b_enc.detach().float().contiguous().clone(), "b_dec": b_dec.float().contiguous()}


def export_saelens(d: Dictionary, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``d`` in the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors``.

    ``architecture`` is ``"topk"`` (with ``activation_fn_kwargs={"k": k}``; TopK then ReLU,
    as SAELens' TopK activation) or ``"standard"`` (ReLU); ``apply_b_dec_to_input`` is true
    and ``normalize_activations`` ``"none"`` because the normalisation is folded into the
    weights (see :func:`saelens_tensors`). The config uses the pre-6.0 flat keys, which
    current SAELens converts on load. Provenance goes under ``"steerlab"``.
    """
    from safetensors.torch import save_file

    cfg = d.config
    topk = cfg.kind_of_sae == "topk"
    doc: dict[str, Any] = {
        "architecture": "topk" if topk else "standard",
        "d_in": cfg.width,
        "d_sae": cfg.size,
        "dtype": "float32",
        "device": "cpu",
        "model_name": d.model,
        "hook_name": d.layer,
        "hook_head_index": None,
        "activation_fn_str": "topk" if topk else "relu",
        "activation_fn_kwargs": {"k": cfg.k} if topk else {},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "steerlab": {"format": FORMAT, "version": VERSION, "kind": d.kind, "kind_note": KIND_NOTE,
                     "weights_hash": d.weights_hash, "data_sha256": d.data_hash,
                     "normalization_folded": {"center": cfg.center, "normalize": cfg.normalize,
                                              "scale": float(d.sae.scale)},
                     "metrics": _json_safe(d.metrics)},
    }
    if topk:
        doc["k"] = cfg.k
    folder = Path(folder)
    with _atomic_folder(folder, overwrite, SAELENS_CONFIG_FILE) as work:
        save_file(saelens_tensors(d.sae), str(work / SAELENS_WEIGHTS_FILE))
        (work / SAELENS_CONFIG_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        for p in work.iterdir():
            normal_permissions(p)
    return folder
