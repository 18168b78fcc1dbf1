"""Dictionaries on disk: a trained SAE plus what it was trained on.

A dictionary is a folder::

    config.json           format name and version, model, weights hash, layer, target (key ``kind``),
                          width, size, k, normalisation statistics, data, metrics, versions
    weights.safetensors   W_enc [width, size], b_enc [size], W_dec [size, width], b_dec [width],
                          center [width], scale [], data_mean [width] (float64); batchtopk
                          adds threshold [], jumprelu log_threshold [size] (:func:`tensor_names`)

The target (stored under the key ``kind``) is ``"feature"`` (an SAE over response vectors ``r_t``) or ``"archetype"``
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
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import torch

from steerlab import schema
from steerlab import validation as check
from steerlab.artifacts import TEMP_MARK, clean_json, file_sha256, normal_permissions
from steerlab.artifacts import versions as library_versions
from steerlab.errors import ConfigError, DictionaryError, OutputError, first_line
from steerlab.sae import SAE_CONFIG_SCHEMA as _SAE_FIELDS
from steerlab.sae import STORED_KEYS, DataStats, SAEConfig, SparseAutoencoder, snap_thresholds
from steerlab.sae_names import ARCHITECTURES, K_ARCHITECTURES

FORMAT = "steerlab-dictionary"
VERSION = 1
SUPPORTED_VERSIONS = (1,)
TARGETS = ("feature", "archetype")
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"
SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "center", "scale")
#: tensors one architecture adds: batchtopk's estimated inference threshold [], jumprelu's log thresholds [size]
_ARCHITECTURE_TENSORS = {"batchtopk": ("threshold",), "jumprelu": ("log_threshold",)}


def tensor_names(architecture: str) -> tuple[str, ...]:
    """The SAE tensors a dictionary of ``architecture`` stores (its ``state_dict`` keys)."""
    return _TENSORS + _ARCHITECTURE_TENSORS.get(architecture, ())


GAMMA_DEFINITION = (
    "gamma = ||mean|| / sqrt(sum_i var_i), over the training data before normalisation; "
    "null when the data has no spread"
)
TARGET_NOTE = (
    "feature: SAE over response vectors r_t; archetype: SAE over generators g_t = r_{t+1} - r_t "
    "(not the 'archetypal SAE' of the SAE literature)"
)


@dataclass
class Dictionary:
    """A trained SAE and its provenance.

    ``stats`` and ``data_hash`` default to what :func:`steerlab.sae.train_sae` measured
    (``sae.stats``); ``metrics`` is the metrics dict it returned.
    """

    sae: SparseAutoencoder
    model: str
    layer: str
    target: str = "feature"
    weights_hash: str | None = None
    data_description: str = ""
    data_hash: str | None = None
    stats: DataStats | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    data_manifest: dict[str, Any] | None = None  # what the corpus held (steerlab.capture.Manifest), if known
    #: why ``weights_hash`` is None when that is known (an import: :data:`SAELENS_WEIGHTS_NOTE`); messages say it
    weights_note: str | None = None

    def __post_init__(self) -> None:
        check.choice("target", self.target, TARGETS, what="dictionary target")
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

    @property
    def decoder(self) -> torch.Tensor:
        """The decoder matrix in the layer's activation space, float32 ``[size, width]``
        (n_latents x channels): row ``j`` is what one unit of latent ``j``'s code adds to an
        activation, so ``sae.decode(codes) = codes @ decoder + sae.decode(0)``. It is the
        SAE's ``W_dec`` times its normalisation scale (the ``W_dec`` of :func:`export_saelens`);
        its rows point along :attr:`directions`."""
        return (self.sae.W_dec.detach().double() * float(self.sae.scale)).float()

    def to_json(self) -> dict[str, Any]:
        """The ``config.json`` document. The format keeps its keys: the target is stored under
        ``kind`` and the SAE's architecture under ``sae.kind_of_sae`` (and ``architecture``)."""
        cfg = self.config
        stats = self.stats.to_json() if self.stats is not None else None
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "weights_hash": self.weights_hash,
            **({"weights_hash_note": self.weights_note} if self.weights_note is not None else {}),
            "layer": self.layer,
            "kind": self.target,  # the format keeps its key: "kind" holds the target
            "kind_note": TARGET_NOTE,
            "architecture": cfg.architecture,
            "width": cfg.width,
            "size": cfg.size,
            "k": cfg.k if cfg.architecture in K_ARCHITECTURES else None,
            "seed": cfg.seed,
            "sae": cfg.to_dict(),
            "normalization": {
                "center": cfg.center,
                "normalize": cfg.normalize,
                "scale": float(self.sae.scale),
                "stats": stats,
                "gamma_definition": GAMMA_DEFINITION,
            },
            "data": {
                "description": self.data_description,
                "sha256": self.data_hash,
                **({"manifest": clean_json(self.data_manifest)} if self.data_manifest is not None else {}),
            },
            "metrics": clean_json(self.metrics),
            "versions": self.versions,
        }


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
            raise OutputError(f"{folder} already exists; pass overwrite to replace it", parameter="overwrite")
        if not folder.is_dir() or (any(folder.iterdir()) and not (folder / marker).is_file()):
            raise OutputError(f"not replacing {folder}: it is not an empty folder or one written by steerlab")
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{TEMP_MARK}", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror}") from exc
    try:
        normal_permissions(work, directory=True)
        yield work
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{TEMP_MARK}old-", dir=parent))
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
    tensors = {name: sd[name].detach().contiguous().clone() for name in tensor_names(d.config.architecture)}
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


_STATS_SCHEMA = {
    "n_vectors": schema.integer(1),
    "mean_norm": schema.number(0),
    "std_norm": schema.number(0),
    "gamma": schema.nullable(schema.number(0)),
    "data_sha256": schema.sha256(),
}
#: every key :func:`load` reads, with its type; nothing is defaulted (issue 10: a config without
#: ``sae.k`` loaded with the dataclass's k = 16 while the file said 4)
CONFIG_SCHEMA: dict[str, schema.Field] = {
    "model": schema.string(nonempty=True),
    "layer": schema.string(nonempty=True),
    "kind": schema.one_of(*TARGETS),
    "weights_hash": schema.nullable(schema.string(nonempty=True)),
    "weights_hash_note": schema.optional(schema.string(nonempty=True)),
    "architecture": schema.one_of(*ARCHITECTURES),
    "width": schema.integer(1),
    "size": schema.integer(1),
    "k": schema.nullable(schema.integer(1)),
    "seed": schema.integer(),
    "sae": schema.obj(
        {key: _SAE_FIELDS[key] for key in (STORED_KEYS.get(f.name, f.name) for f in dataclass_fields(SAEConfig))}
    ),
    "normalization": schema.obj(
        {
            "center": schema.boolean(),
            "normalize": schema.boolean(),
            "scale": schema.number(above=0),
            "stats": schema.nullable(schema.obj(_STATS_SCHEMA)),
        }
    ),
    "data": schema.obj(
        {
            "description": schema.string(),
            "sha256": schema.nullable(schema.sha256()),
            "manifest": schema.optional(schema.mapping()),
        }
    ),
    "weights": schema.obj({"file": schema.filename(), "sha256": schema.sha256()}),
    "metrics": schema.mapping(),
    "versions": schema.mapping(),
}


def read_config(folder: str | Path) -> dict[str, Any]:
    """``folder/config.json`` checked against :data:`CONFIG_SCHEMA` and for consistency
    (the top-level summary must agree with the ``sae`` block); :class:`DictionaryError`
    with one line naming the file and the key otherwise."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise DictionaryError(f"{folder} is not a steerlab dictionary: no {CONFIG_FILE}")
    doc = schema.read_json(
        cfg_path, CONFIG_SCHEMA, DictionaryError, format=FORMAT, versions=SUPPORTED_VERSIONS, what="steerlab dictionary"
    )
    sae, norm = doc["sae"], doc["normalization"]
    topk = sae["kind_of_sae"] in K_ARCHITECTURES
    agree = [
        ("width", doc["width"], "sae.width", sae["width"]),
        ("size", doc["size"], "sae.size", sae["size"]),
        ("seed", doc["seed"], "sae.seed", sae["seed"]),
        ("architecture", doc["architecture"], "sae.kind_of_sae", sae["kind_of_sae"]),
        ("k", doc["k"], "sae.k", sae["k"] if topk else None),
        ("normalization.center", norm["center"], "sae.center", sae["center"]),
        ("normalization.normalize", norm["normalize"], "sae.normalize", sae["normalize"]),
    ]
    for key, value, other, expected in agree:
        if value != expected or type(value) is not type(expected):
            raise DictionaryError(f"{cfg_path}: key {key!r} ({value!r}) disagrees with {other!r} ({expected!r})")
    return doc


def locate(spec: str | Path, shipped: Mapping[str, Path], model_name: str) -> Path:
    """The folder of dictionary ``spec``: an existing folder, else the name of a dictionary
    shipped with the model (``shipped``: name -> folder, as ``model.shipped_dictionaries()``).
    The one resolver of dictionary names (``intervene --feature``, ``analyze``, ``partials``)."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return folder
    if str(spec) in shipped:
        return Path(shipped[str(spec)])
    names = f" or one shipped with {model_name}: {', '.join(shipped)}" if shipped else ""
    hint = check.did_you_mean(str(spec), shipped)
    raise DictionaryError(
        f"dictionary {str(spec)!r} not found: give a dictionary folder written by `steerlab learn`"
        f"{names} ({spec} is not a steerlab dictionary folder).{hint}"
    )


def load(folder: str | Path) -> Dictionary:
    """Read a dictionary folder; raise :class:`DictionaryError` with a one-line reason if it can't.

    The config is checked by :func:`read_config`; the weights must match the sha256 it
    records, hold every tensor with the shape the config implies, and be finite.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    doc = read_config(folder)
    cfg_path = folder / CONFIG_FILE
    try:
        config = SAEConfig.from_dict(doc["sae"])
    except (TypeError, ValueError) as exc:
        raise DictionaryError(f"{cfg_path}: key 'sae' is invalid: {first_line(exc)}") from None
    weights_name, expected_hash = doc["weights"]["file"], doc["weights"]["sha256"]
    norm, data = doc["normalization"], doc["data"]
    weights_path = folder / weights_name
    if not weights_path.is_file():
        raise DictionaryError(f"{folder} is missing its weights file {weights_name}")
    if file_sha256(weights_path) != expected_hash:
        raise DictionaryError(
            f"{weights_path} does not match the sha256 recorded in {CONFIG_FILE} (damaged or replaced)"
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise DictionaryError(f"{weights_path} is unreadable: {exc}") from exc
    names = tensor_names(config.architecture)
    missing = [name for name in names if name not in tensors]
    if missing:
        raise DictionaryError(f"{weights_path} lacks tensors: {', '.join(missing)}")
    if norm["stats"] is not None and "data_mean" not in tensors:
        raise DictionaryError(f"{cfg_path}: key 'normalization.stats' is set but {weights_path} lacks data_mean")
    if "data_mean" in tensors and tuple(tensors["data_mean"].shape) != (config.width,):
        raise DictionaryError(
            f"{weights_path}: data_mean has shape {list(tensors['data_mean'].shape)}, "
            f"not [{config.width}] (key 'sae.width')"
        )
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise DictionaryError(f"{weights_path} holds NaN or infinite values in {', '.join(sorted(bad))}")
    sae = SparseAutoencoder(config)
    try:
        sae.load_state_dict({name: tensors[name] for name in names})
    except RuntimeError as exc:
        raise DictionaryError(f"{weights_path} does not fit its config: {str(exc).splitlines()[0]}") from exc
    if float(sae.scale) != float(norm["scale"]):
        raise DictionaryError(
            f"{cfg_path}: key 'normalization.scale' ({norm['scale']!r}) differs from the "
            f"weights' scale ({float(sae.scale)!r})"
        )
    sae.eval()
    stats = None
    if norm["stats"] is not None:
        s = norm["stats"]
        stats = DataStats(
            s["n_vectors"], tensors["data_mean"], s["mean_norm"], s["std_norm"], s["gamma"], s["data_sha256"]
        )
    sae.stats = stats
    return Dictionary(
        sae=sae,
        model=doc["model"],
        layer=doc["layer"],
        target=doc["kind"],
        weights_hash=doc["weights_hash"],
        data_description=data["description"],
        data_hash=data["sha256"],
        stats=stats,
        metrics=doc["metrics"],
        versions=doc["versions"],
        data_manifest=data.get("manifest"),
        weights_note=doc.get("weights_hash_note"),
    )


def load_dictionary(name_or_path: str | Path, model: Any = None) -> Dictionary:
    """A dictionary by folder (written by ``steerlab learn``) or by the name of one shipped
    with a model's weights (``steerlab dictionaries``), through the same resolver as
    ``intervene --feature``.

    ``model``: an :class:`~steerlab.model.AudioModel` or a model name; the dictionary must
    have been learned on it (same name and weights hash). None: a folder is read as it is,
    a name is looked up among the default model's dictionaries. Raises
    :class:`DictionaryError` (not found, damaged, or learned on another model).
    """
    from steerlab import api

    if not isinstance(name_or_path, (str, Path)):
        raise ConfigError(
            f"name_or_path must be a dictionary's folder or name (str or Path), got {type(name_or_path).__name__} "
            f"{str(name_or_path)[:60]!r}; list the shipped ones with `steerlab dictionaries`",
            parameter="name_or_path",
        )
    if model is None and Path(name_or_path).expanduser().is_dir():
        return load(Path(name_or_path).expanduser())
    if model is None or isinstance(model, str):
        model = api.load_model(model)
    return api.resolve_dictionary(name_or_path, model).dictionary


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
    tensors = {
        "W_enc": (w_enc / s).float().contiguous(),
        "W_dec": (w_dec * s).float().contiguous(),
        "b_enc": sae.b_enc.detach().float().contiguous().clone(),
        "b_dec": b_dec.float().contiguous(),
    }
    thresholds = sae.thresholds  # on the pre-activations, which the folding leaves unchanged
    if thresholds is not None:
        tensors["threshold"] = thresholds.float().contiguous().clone()
    return tensors


#: the SAELens architecture each steerlab architecture exports as: batchtopk's inference rule is a
#: JumpReLU with one threshold for every latent (SAELens saves its own BatchTopK SAEs the same way);
#: matryoshka infers as TopK (its nesting only shapes training)
SAELENS_ARCHITECTURE = {
    "topk": "topk",
    "relu": "standard",
    "batchtopk": "jumprelu",
    "jumprelu": "jumprelu",
    "matryoshka": "topk",
}


def export_saelens(d: Dictionary, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``d`` in the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors``.

    ``architecture`` is ``"topk"`` (with ``activation_fn_kwargs={"k": k}``; TopK then ReLU,
    as SAELens' TopK activation), ``"standard"`` (ReLU) or ``"jumprelu"`` (with a ``threshold``
    tensor; see :data:`SAELENS_ARCHITECTURE`); ``apply_b_dec_to_input`` is true
    and ``normalize_activations`` ``"none"`` because the normalisation is folded into the
    weights (see :func:`saelens_tensors`). The config uses the pre-6.0 flat keys, which
    current SAELens converts on load, plus SAELens 6's ``metadata`` block, whose
    ``steerlab_input`` (:data:`INPUT_KEY`) says what the SAE reads: ``r_t``, or ``r_{t+1} - r_t``
    for an archetype dictionary. Provenance goes under ``"steerlab"``.
    """
    from safetensors.torch import save_file

    cfg = d.config
    architecture = SAELENS_ARCHITECTURE[cfg.architecture]
    topk = architecture == "topk"
    doc: dict[str, Any] = {
        "architecture": architecture,
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
        # SAELens 6's metadata block (extra keys allowed): what the SAE reads, for any reader
        "metadata": {"model_name": d.model, "hook_name": d.layer, INPUT_KEY: INPUT_OF_TARGET[d.target]},
        "steerlab": {
            "format": FORMAT,
            "version": VERSION,
            "kind": d.target,
            "kind_note": TARGET_NOTE,
            "weights_hash": d.weights_hash,
            "data_sha256": d.data_hash,
            "normalization_folded": {"center": cfg.center, "normalize": cfg.normalize, "scale": float(d.sae.scale)},
            "metrics": clean_json(d.metrics),
        },
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


#: the key of a SAELens ``cfg.json``'s ``metadata`` saying what the SAE reads: ``r_t`` (a layer's
#: activation at frame t, a feature dictionary) or ``r_{t+1} - r_t`` (an archetype dictionary)
INPUT_KEY = "steerlab_input"
INPUT_OF_TARGET = {"feature": "r_t", "archetype": "r_{t+1} - r_t"}
_TARGET_OF_INPUT = {value: key for key, value in INPUT_OF_TARGET.items()}


def _target_of(cfg: dict[str, Any], ours: dict[str, Any], cfg_path: Path) -> str:
    """The dictionary's target from ``metadata.steerlab_input`` (any SAELens writer may set it) and
    the ``steerlab`` block's ``kind``; they must agree; ``feature`` when neither says."""
    meta = cfg.get("metadata")
    said = meta.get(INPUT_KEY) if isinstance(meta, dict) else None
    if said is not None and said not in _TARGET_OF_INPUT:
        raise DictionaryError(
            f"{cfg_path}: metadata.{INPUT_KEY} ({said!r}) must be one of {', '.join(map(repr, _TARGET_OF_INPUT))}"
        )
    target = _TARGET_OF_INPUT.get(said) if said is not None else None
    kind = ours.get("kind")
    if target is not None and kind is not None and kind != target:
        raise DictionaryError(f"{cfg_path}: metadata.{INPUT_KEY} ({said!r}) contradicts steerlab.kind ({kind!r})")
    return target or kind or "feature"


#: SAELens architecture -> steerlab architecture, for :func:`import_saelens`
FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
#: the activation each SAELens architecture may name (``activation_fn_str`` before SAELens 6,
#: ``activation_fn`` in its converted configs; absent in SAELens 6's own): ``standard`` is a ReLU
#: unless it says ``topk`` (SAELens 5's TopK SAEs: ``activation_fn_kwargs = {"k": k}``)
SAELENS_ACTIVATIONS = {"standard": ("relu", "topk"), "topk": ("topk",), "jumprelu": ("relu",)}
#: why an imported dictionary records no weights hash (``config.json`` ``weights_hash_note``)
SAELENS_WEIGHTS_NOTE = "imported from SAELens: weights unknown"
#: tensors a SAELens folder may hold beside the ones steerlab reads, when they change nothing
_NEUTRAL_TENSORS = ("scaling_factor", "finetuning_scaling_factor")


def _saelens_error(cfg_path: Path, key: str, value: Any, rule: str) -> DictionaryError:
    return DictionaryError(f"{cfg_path}: key {key!r} ({value!r}) {rule}")


def _saelens_activation(cfg: dict[str, Any], cfg_path: Path, d_sae: int) -> tuple[str, int | None]:
    """The steerlab architecture and k a SAELens ``cfg.json`` says, read exactly or refused.

    SAELens <= 5 (``sae_lens.sae.SAEConfig``): ``architecture`` (default ``standard``) with
    ``activation_fn_str`` (``relu`` default, ``topk`` with ``activation_fn_kwargs["k"]``);
    SAELens 6 (``sae_lens.saes``): ``architecture`` ``standard`` | ``topk`` (top-level ``k``) |
    ``jumprelu``, the activation implied. ``k`` may be in both places; then they must agree."""
    arch = cfg.get("architecture", "standard")
    if arch not in FROM_SAELENS:
        raise _saelens_error(
            cfg_path, "architecture", arch, f"is not one steerlab reads; readable: {', '.join(FROM_SAELENS)}"
        )
    key = "activation_fn_str" if "activation_fn_str" in cfg else "activation_fn"
    act = cfg.get(key)
    if act is None:
        act = "topk" if arch == "topk" else "relu"
    if act not in SAELENS_ACTIVATIONS[arch]:
        raise _saelens_error(
            cfg_path,
            key,
            act,
            f"is not an activation steerlab reads with architecture {arch!r}: {', '.join(SAELENS_ACTIVATIONS[arch])}",
        )
    if act != "topk":
        for extra in ("activation_fn_kwargs", "k"):
            if cfg.get(extra) not in (None, {}):
                raise _saelens_error(cfg_path, extra, cfg[extra], f"is set but the activation is {act!r}, not topk")
        return FROM_SAELENS[arch], None
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if not isinstance(kwargs, dict) or set(kwargs) - {"k"}:
        raise _saelens_error(cfg_path, "activation_fn_kwargs", kwargs, 'must be {} or {"k": K} for topk')
    given = {
        name: value
        for name, value in (("activation_fn_kwargs.k", kwargs.get("k")), ("k", cfg.get("k")))
        if value is not None
    }
    if not given:
        raise DictionaryError(f"{cfg_path}: a topk SAE needs its k: key 'activation_fn_kwargs.k' or 'k' is missing")
    if len(set(map(repr, given.values()))) > 1:
        raise DictionaryError(
            f"{cfg_path}: key 'activation_fn_kwargs.k' ({kwargs['k']!r}) disagrees with 'k' ({cfg['k']!r})"
        )
    name, k = next(iter(given.items()))
    if not check.is_integer(k) or not 1 <= k <= d_sae:
        raise _saelens_error(cfg_path, name, k, f"must be a whole number from 1 to d_sae ({d_sae})")
    return "topk", int(k)


def _saelens_forward_keys(cfg: dict[str, Any], cfg_path: Path) -> bool:
    """Check the keys that change SAELens' forward and that steerlab cannot store; return
    ``apply_b_dec_to_input`` (SAELens' default True)."""
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None, False):
        raise _saelens_error(
            cfg_path, "normalize_activations", norm, "must be 'none' (the normalisation is not stored in the weights)"
        )
    for key, rule in (
        ("finetuning_scaling_factor", "must be false (a per-latent decoder scale steerlab does not read)"),
        ("rescale_acts_by_decoder_norm", "must be false (codes rescaled by decoder norms: steerlab does not read it)"),
    ):
        if cfg.get(key) not in (None, False):
            raise _saelens_error(cfg_path, key, cfg[key], rule)
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise _saelens_error(
            cfg_path, "reshape_activations", cfg["reshape_activations"], "must be 'none' (per-head SAEs are not read)"
        )
    if cfg.get("hook_head_index") is not None:
        raise _saelens_error(
            cfg_path, "hook_head_index", cfg["hook_head_index"], "must be null (per-head SAEs are not read)"
        )
    apply = cfg.get("apply_b_dec_to_input", True)
    if not isinstance(apply, bool):
        raise _saelens_error(cfg_path, "apply_b_dec_to_input", apply, "must be true or false")
    return apply


def _saelens_name(cfg: dict[str, Any], key: str) -> Any:
    """``key`` (model_name, hook_name) at the top level (SAELens <= 5; ``hook_point`` before 3)
    or in SAELens 6's ``metadata``."""
    meta: dict[str, Any] = cfg["metadata"] if isinstance(cfg.get("metadata"), dict) else {}
    value = cfg.get(key) or (cfg.get("hook_point") if key == "hook_name" else None)
    return value or meta.get(key)


def import_saelens(folder: str | Path, model: str | None = None, layer: str | None = None) -> Dictionary:
    """A SAELens-format dictionary (``cfg.json`` + ``sae_weights.safetensors``: ``W_enc [d_in, d_sae]``,
    ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``, and ``threshold [d_sae]`` for
    jumprelu) as a steerlab :class:`Dictionary` whose encode and decode are SAELens' forward
    (``codes = act((x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc)``, ``x_hat = codes @ W_dec + b_dec``).

    The config is read exactly as SAELens 5 and 6 define it, or refused (:func:`_saelens_activation`):
    ``standard`` with ``activation_fn_str`` ``relu`` (or none) -> relu, ``standard`` with
    ``activation_fn_str`` ``topk`` and ``activation_fn_kwargs.k`` (SAELens 5's TopK SAEs) -> topk,
    ``topk`` (``k`` top-level or in ``activation_fn_kwargs``) -> topk, ``jumprelu`` -> jumprelu (a
    batchtopk export reads back as the jumprelu it is at inference). SAELens' TopK keeps the k largest
    pre-activations then applies a ReLU, as steerlab's does. SAELens' decoder rows need not be unit norm
    while steerlab's are; the SAE's one ``scale`` takes their mean norm (``center`` is 0, ``b_dec``
    absorbs SAELens' ``b_dec``), so rows of equal norm, as :func:`export_saelens` writes, come back
    exactly unit. ``model`` and ``layer`` default to ``model_name`` and ``hook_name`` (top level, or
    SAELens 6's ``metadata``); the target (feature or archetype) from ``metadata.steerlab_input``
    (:data:`INPUT_KEY`) or the ``steerlab`` block, the provenance from the ``steerlab`` block when the
    folder was written by :func:`export_saelens`; otherwise the weights hash is unknown and
    ``weights_note`` says so (:data:`SAELENS_WEIGHTS_NOTE`). Whether the model has the layer at that
    width is checked by :func:`steerlab.learned.check_dictionary_fits` (``import-saelens`` runs it).

    Refused with :class:`DictionaryError`, one line naming the key or tensor: other architectures or
    activations, a topk without k, normalisation other than ``"none"``, a finetuning scaling factor,
    decoder-norm rescaling, per-head reshaping, missing, misshapen, unknown or non-finite tensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights_path = folder / SAELENS_CONFIG_FILE, folder / SAELENS_WEIGHTS_FILE
    if not cfg_path.is_file() or not weights_path.is_file():
        raise DictionaryError(
            f"{folder} is not a SAELens folder: it needs {SAELENS_CONFIG_FILE} and {SAELENS_WEIGHTS_FILE}"
        )
    cfg = schema.parse_json(cfg_path.read_text(), cfg_path, DictionaryError)
    if not isinstance(cfg, dict):
        raise DictionaryError(f"{cfg_path} is not a JSON object")
    for key in ("d_in", "d_sae"):
        if not check.is_integer(cfg.get(key)) or cfg[key] < 1:
            raise _saelens_error(cfg_path, key, cfg.get(key), "must be a whole number >= 1")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    architecture, k = _saelens_activation(cfg, cfg_path, d_sae)
    apply_b_dec = _saelens_forward_keys(cfg, cfg_path)
    try:
        w = {name: t.detach().double() for name, t in load_file(str(weights_path)).items()}
    except (SafetensorError, OSError) as exc:
        raise DictionaryError(f"{weights_path} is unreadable: {first_line(exc)}") from None
    needed = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if architecture == "jumprelu":
        needed["threshold"] = (d_sae,)
    for name, shape in needed.items():
        if name not in w or tuple(w[name].shape) != shape:
            got = list(w[name].shape) if name in w else "missing"
            raise DictionaryError(
                f"{weights_path}: {name} must have shape {list(shape)} (cfg.json d_in, d_sae); got {got}"
            )
    for name, t in w.items():
        if name in needed:
            continue
        if name not in _NEUTRAL_TENSORS or not bool((t == 1).all()):
            raise DictionaryError(
                f"{weights_path} holds tensor {name!r}, which steerlab does not read; "
                f"a SAELens folder holds {', '.join(needed)} (and a scaling_factor of ones)"
            )
    bad = sorted(name for name in needed if not bool(torch.isfinite(w[name]).all()))
    if bad:
        raise DictionaryError(f"{weights_path} holds NaN or infinite values in {', '.join(bad)}; it cannot be imported")
    b_enc = w["b_enc"] if apply_b_dec else w["b_enc"] + w["b_dec"] @ w["W_enc"]
    config = SAEConfig(
        width=d_in,
        size=d_sae,
        architecture=architecture,
        k=k if k is not None else min(16, d_sae),
        center=False,
        normalize=True,
    )
    sae = SparseAutoencoder(config)
    s = float(w["W_dec"].norm(dim=1).mean()) or 1.0
    with torch.no_grad():
        sae.W_enc.copy_(w["W_enc"] * s)
        sae.W_dec.copy_(w["W_dec"] / s)
        sae.b_enc.copy_(b_enc)
        sae.b_dec.copy_(w["b_dec"] / s)
        sae.scale.fill_(s)
        if architecture == "jumprelu":
            if not bool((w["threshold"] > 0).all()):
                raise DictionaryError(f"{weights_path}: threshold must be > 0 for every latent")
            sae.jump_threshold.copy_(w["threshold"])
            snap_thresholds(sae)
    sae.eval()
    ours: dict[str, Any] = cfg["steerlab"] if isinstance(cfg.get("steerlab"), dict) else {}
    model, layer = model or _saelens_name(cfg, "model_name"), layer or _saelens_name(cfg, "hook_name")
    if not model or not layer:
        missing = "model" if not model else "layer"
        raise DictionaryError(
            f"{cfg_path} names no {'model_name' if not model else 'hook_name'}: pass {missing}",
            parameter=missing,
        )
    weights_hash = ours.get("weights_hash")
    return Dictionary(
        sae=sae,
        model=model,
        layer=layer,
        target=_target_of(cfg, ours, cfg_path),
        weights_hash=weights_hash,
        weights_note=None if weights_hash is not None else SAELENS_WEIGHTS_NOTE,
        data_description=f"imported from the SAELens folder {folder.name}",
        data_hash=ours.get("data_sha256"),
        metrics=dict(ours.get("metrics") or {}),
    )
