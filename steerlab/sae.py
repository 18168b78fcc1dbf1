"""Sparse autoencoders: the dictionaries behind features and archetypes.

One SAE code serves both kinds of dictionary. *Features* are learned over
response vectors ``r_t`` (a layer's activation at frame ``t``); *archetypes*
over generators ``g_t = r_{t+1} - r_t`` (recurring motions in activation
space; unrelated to the "archetypal SAE" of the SAE literature). The kind is
provenance recorded by :mod:`steerlab.dictionary`; training is identical.

Two variants of our own recipe:

- ``topk`` (default, after Gao et al. 2024): keep the ``k`` largest
  pre-activations of each vector, ReLU them, zero the rest. Latents that have
  not fired for ``dead_steps`` training steps get an auxiliary loss (AuxK):
  the top ``aux_k`` of their pre-activations must reconstruct the residual the
  live latents leave, so dead latents receive gradient towards useful
  directions. Every ``split_every`` steps (in the first 80% of training), each
  *rare* latent (fired on fewer than half the vectors an average latent fires
  on, ``k / size``, since the last check) is paired with the most frequent
  latent and the two split it: the frequent latent's decoder row ``m`` and the
  top principal direction ``u`` of the residuals on the vectors it fired on
  become ``normalise(m + u)`` and ``normalise(m - u)``. This is codebook
  splitting as in vector quantisation (Linde, Buzo & Gray 1980): a latent that
  fires too often is typically a merge of two true directions ``a`` and ``b``
  (``m ~ a + b``, residuals ``~ +-(a - b)``), and its split gives back ``a`` and
  ``b``, while a latent that hardly fires is capacity going to waste. On the
  planted test (64 directions, 64 latents, k 3) it lifts recovery at cosine
  0.95 from 0.83 to 1.00 (docs/analyze.md).
- ``relu``: ReLU codes with an L1 penalty. Latents that have not fired for
  ``dead_steps`` steps are resampled (Bricken et al. 2023) in the first half of
  training: pointed at the residual of a poorly reconstructed input.

Three more, from the field (planted-truth recoveries in docs/analyze.md):

- ``batchtopk`` (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders"): training keeps
  the ``k * batch`` largest activations of the whole batch, so ``k`` is an average per vector;
  inference uses one threshold estimated during training (:func:`_batch_topk`). AuxK and
  rare-latent splitting as for ``topk``.
- ``jumprelu`` (Rajamanoharan et al. 2024, "Jumping Ahead"): a learned threshold ``theta`` per
  latent, codes ``pre * H(pre - theta)``, trained with an L0 penalty ``l0 * ||codes||_0``
  through straight-through estimators with a rectangle kernel of bandwidth ``epsilon``
  (:class:`_JumpReLU`). From the paper: inputs scaled to unit mean squared norm (one scalar, the
  GDM convention of the paper and Gemma Scope sec. 3.1, not ``width`` as for the others),
  ``epsilon`` 0.001, ``theta`` initialised at 0.001, Adam betas (0, 0.999), the L0 coefficient
  warmed up linearly from 0 (over the first :data:`L0_WARMUP` of training here). Not from it:
  ``theta`` is trained directly, not as its log (SAELens and dictionary_learning do the same:
  under Adam a log moves ``theta`` by about ``lr * theta`` a step, so from 0.001 it cannot reach
  the codes' scale in a short run; it is still stored as ``log_threshold``); rare latents are split
  as for ``topk`` (with the measured mean rate for ``k / size``); learning rate 3e-3
  (:data:`DEFAULT_LR`) and ``l0`` 0.1, steerlab's choices (the paper sweeps the coefficient and
  uses 7e-5 over ~10^5 steps), made on planted development seeds 0-5 and then evaluated once on
  the test seeds 6-8, where it passes the planted bar (docs/sae.md).
- ``matryoshka`` (Bussmann et al. 2025 / Nabeshima 2024, "Matryoshka SAEs"): TopK codes
  (the 2025 paper's BatchTopK codes did worse, :data:`THRESHOLD_ARCHITECTURES`), and every nested
  prefix of the dictionary (``prefixes``) must reconstruct on its own, the losses summed with equal
  weights (:func:`_prefix_loss`; the references average them, the same up to a factor Adam
  ignores). By default one inner prefix, half the dictionary (:data:`PREFIX_DIVISORS`, steerlab's
  choice on planted development seeds; the paper nests five levels down to size/16, and Nabeshima
  samples the prefixes each batch). AuxK and splitting as for ``topk``.

Decoder rows are kept at unit norm (the gradient's radial part is removed
before each step and the rows are renormalised after it), so a code's value is
the length of its contribution and the L1 penalty cannot be dodged by shrinking
codes against growing decoder rows.

Normalisation. Before training, one streaming pass over the data computes its
statistics (:class:`DataStats`). The SAE then works on
``z = (x - c) / s`` with ``c`` the data mean when ``center`` (else 0) and
``s = sqrt(E||x - c||^2 / width)`` when ``normalize`` (else 1): after it, the
*mean squared norm* of the SAE input is exactly ``width`` (RMS norm
``sqrt(width)``, SAELens' "expected_average_only_in" convention). ``s`` is one
scalar, so directions are not distorted: see :attr:`SparseAutoencoder.directions`.

Determinism: all randomness (initialisation, shuffling, resampling) comes from
one ``torch.Generator`` seeded with ``config.seed``; with the same data and the
same number of threads, CPU training gives bit-identical weights.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any, overload

import numpy as np
import torch

from steerlab import schema
from steerlab import validation as check
from steerlab.errors import ConfigError, NoVarianceError, SAEDataError
from steerlab.sae_names import ARCHITECTURES, K_ARCHITECTURES

__all__ = ["ARCHITECTURES", "K_ARCHITECTURES", "SAEConfig", "SparseAutoencoder", "train_sae"]

#: a whole data set ``[n, width]``, or a factory returning an iterable of ``[b, width]`` blocks per call
Data = torch.Tensor | np.ndarray | Callable[[], Iterable[Any]]


#: spread below this fraction of the data's RMS norm is float32 round-off of one repeated
#: vector (float32 resolves about 6e-8 relative; 1e-5 leaves room for the round-off a
#: layer adds when it computes the same output at different positions), not variance
NO_VARIANCE_RTOL = 1e-5


def has_variance(stats: DataStats) -> bool:
    """Whether the vectors ``stats`` describes differ by more than round-off: their spread
    ``std_norm`` exceeds :data:`NO_VARIANCE_RTOL` times their RMS norm ``sqrt(mean_norm^2 +
    std_norm^2)``. One vector, silence, or a constant signal through a layer has none."""
    rms = math.sqrt(stats.mean_norm**2 + stats.std_norm**2)
    return stats.n > 1 and stats.std_norm > NO_VARIANCE_RTOL * rms


def require_variance(data: Data | DataStats, width: int, where: str, what: str, source: str) -> DataStats:
    """Statistics of ``data`` (``[n, width]`` or a block factory, or stats already measured);
    :class:`NoVarianceError` naming ``where`` (model and layer), ``what`` (the kind of vectors)
    and ``source`` (the corpus) when the vectors do not vary (:func:`has_variance`)."""
    stats = data if isinstance(data, DataStats) else data_stats(data, width)
    if not has_variance(stats):
        raise NoVarianceError(
            f"the data has no variance at {where}: its {stats.n} {what} from {source} are all equal (spread "
            f"{stats.std_norm:.3g}, norm {stats.mean_norm:.3g}; silence, a constant or a single frame?); "
            "nothing was written",
            stats,
        )
    return stats


@dataclass(frozen=True)
class SAEConfig:
    """Hyperparameters of one SAE. ``width``: input dimension; ``size``: number of latents.

    ``k`` is used by ``topk``, ``batchtopk`` and ``matryoshka`` and ``l1`` by ``relu`` (both are
    recorded either way). ``l0`` (the L0 coefficient ``lambda``), ``bandwidth`` (``epsilon``) and
    ``threshold_init`` belong to ``jumprelu``, ``prefixes`` (nested dictionary sizes, increasing,
    ending at ``size``) to ``matryoshka``; None picks the documented default (``effective_*``).
    These are stored only for their architecture (:data:`ARCHITECTURE_FIELDS`). ``lr`` None picks
    the architecture's default (:data:`DEFAULT_LR`: 1e-3, jumprelu 3e-3), resolved on construction.
    ``dead_steps``: a latent that has not fired for this many training steps is dead
    (0 turns dead-latent handling off). ``aux_k`` (default ``min(width // 2, size)``)
    and ``aux_coef`` shape the TopK auxiliary loss. ``split_every``: steps between the
    TopK checks for rare latents, which are split off the most frequent ones (module
    docstring; 0 turns splitting off). The loss is the squared
    reconstruction error summed over the normalised dimensions, averaged over the
    batch, plus ``l1 * sum(codes)`` (relu) or ``aux_coef * AuxK`` (topk).
    """

    width: int
    size: int
    architecture: str = "topk"
    k: int = 16
    l1: float = 1.0
    lr: float | None = None
    epochs: int = 10
    batch_size: int = 256
    seed: int = 0
    center: bool = True
    normalize: bool = True
    dead_steps: int = 200
    aux_k: int | None = None
    aux_coef: float = 1 / 32
    split_every: int = 50
    l0: float = 0.1
    bandwidth: float | None = None
    threshold_init: float | None = None
    prefixes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # checked, not converted: the fields are written to config.json as given
        check.choice("architecture", self.architecture, ARCHITECTURES, what="SAE architecture")
        if self.lr is None:  # the architecture's default, resolved here: stored as the number it is
            object.__setattr__(self, "lr", DEFAULT_LR.get(self.architecture, 1e-3))
        for name in ("width", "size", "k", "epochs", "batch_size"):
            check.integer(name, getattr(self, name), low=1)
        check.integer("seed", self.seed)
        check.integer("dead_steps", self.dead_steps, low=0)  # 0: no dead-latent handling
        check.integer("split_every", self.split_every, low=0)  # 0: no splitting
        if self.architecture in K_ARCHITECTURES and self.k > self.size:  # k is recorded, unused, by the others
            raise ConfigError(f"k ({self.k}) must be <= size ({self.size})", parameter=("k", "size"))
        check.integer_or_none("aux_k", self.aux_k, low=1, high=self.size)
        check.positive("lr", self.lr)
        check.non_negative("l1", self.l1)
        check.non_negative("aux_coef", self.aux_coef)
        check.boolean("center", self.center)
        check.boolean("normalize", self.normalize)
        check.non_negative("l0", self.l0)
        check.number_or_none("bandwidth", self.bandwidth, low=0, low_open=True)
        check.number_or_none("threshold_init", self.threshold_init, low=0, low_open=True)
        if self.prefixes is not None:
            sizes = check.sequence("prefixes", self.prefixes, nonempty=True)
            if not isinstance(self.prefixes, tuple):
                raise ConfigError(f"prefixes must be a tuple of integers, got {check.show(self.prefixes)}")
            for j, m in enumerate(sizes):
                check.integer(f"prefixes[{j}]", m, low=1, high=self.size)
            if list(sizes) != sorted(set(sizes)) or sizes[-1] != self.size:
                raise ConfigError(
                    f"prefixes must increase strictly and end at size ({self.size}), got {list(sizes)}",
                    parameter=("prefixes", "size"),
                )

    @property
    def learning_rate(self) -> float:
        """``lr`` as resolved on construction (never None)."""
        return self.lr if self.lr is not None else DEFAULT_LR.get(self.architecture, 1e-3)

    @property
    def effective_bandwidth(self) -> float:
        """JumpReLU's kernel bandwidth ``epsilon``: by default the paper's 0.001, in its input space
        (unit mean squared norm, which jumprelu trains in: :func:`_scale_for`)."""
        return self.bandwidth if self.bandwidth is not None else 0.001

    @property
    def effective_threshold_init(self) -> float:
        """JumpReLU's initial threshold (every latent): the paper's 0.001, in the same space."""
        return self.threshold_init if self.threshold_init is not None else 0.001

    @property
    def effective_prefixes(self) -> tuple[int, ...]:
        """Matryoshka's nested dictionary sizes: by default ``size/2, size`` (:data:`PREFIX_DIVISORS`;
        those >= 1, without repeats)."""
        if self.prefixes is not None:
            return self.prefixes
        return tuple(sorted({max(1, self.size // d) for d in PREFIX_DIVISORS} | {self.size}))

    @property
    def effective_aux_k(self) -> int:
        return self.aux_k if self.aux_k is not None else max(1, min(self.width // 2, self.size))

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, as the ``sae`` block of a dictionary's ``config.json`` stores them:
        the format keeps its keys, so ``architecture`` is stored under ``kind_of_sae``
        (:data:`STORED_KEYS`). Fields of one architecture (:data:`ARCHITECTURE_FIELDS`) are written
        only for it, so topk and relu configs keep exactly the keys they had."""
        return {
            STORED_KEYS.get(name, name): list(value) if isinstance(value, tuple) else value
            for name, value in asdict(self).items()
            if self.architecture in ARCHITECTURE_FIELDS.get(name, (self.architecture,))
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        """The config from a stored ``sae`` block (keys as :meth:`to_dict` writes them)."""
        known = {STORED_KEYS.get(f.name, f.name) for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown SAE config keys: {', '.join(unknown)}.{check.did_you_mean(unknown[0], known)} "
                f"Known: {', '.join(sorted(known))}"
            )
        by_field = {_FIELD_OF_KEY.get(key, key): value for key, value in d.items()}
        architecture = by_field.get("architecture", "topk")
        missing = [n for n, archs in ARCHITECTURE_FIELDS.items() if architecture in archs and n not in by_field]
        if missing:
            raise ConfigError(f"a {architecture} SAE config must record {', '.join(missing)}", parameter=tuple(missing))
        if isinstance(by_field.get("prefixes"), list):
            by_field["prefixes"] = tuple(by_field["prefixes"])
        # dictionaries trained before splitting existed do not record it: they were trained without
        return cls(**{"split_every": 0, **by_field})


#: Adam's learning rate of an architecture when ``SAEConfig.lr`` is None (1e-3 for the others).
#: jumprelu 3e-3: chosen on planted development seeds 0-5 (L0 coefficient 0.03 or 0.1 at lr 1e-3,
#: 0.03, 0.1 or 0.3 at 3e-3; the highest least share recovered, then the highest mean, then the fewest
#: changes), before the one evaluation on the test seeds 6-8 (docs/sae.md). The paper's 7e-5 is for
#: ~10^5 steps of 4096 vectors; in ~10^3 steps it leaves the thresholds far below the codes' scale
DEFAULT_LR: dict[str, float] = {"jumprelu": 3e-3}

#: matryoshka's default nested prefixes are ``size // d`` for these ``d``, and ``size``: one inner
#: prefix of half the dictionary. Chosen on planted development seeds 0-5 among size/8..size (the
#: earlier default), size/16..size (the 2025 paper's group fractions 1/16, 1/16, 1/8, 1/4, 1/2),
#: size/4..size and size/2, size by the same rule as :data:`DEFAULT_LR`, then evaluated once on the
#: test seeds 6-8 (docs/sae.md): every smaller prefix that must reconstruct alone cost planted
#: directions on data without hierarchy
PREFIX_DIVISORS: tuple[int, ...] = (2,)

#: the key a :class:`SAEConfig` field is stored under in ``config.json`` where it differs from the
#: field's name: the stored format predates the name (its key stays, the code says ``architecture``)
STORED_KEYS: dict[str, str] = {"architecture": "kind_of_sae"}
_FIELD_OF_KEY = {key: name for name, key in STORED_KEYS.items()}

#: fields only one architecture uses: stored (and required on load) only for it
ARCHITECTURE_FIELDS: dict[str, tuple[str, ...]] = {
    "l0": ("jumprelu",),
    "bandwidth": ("jumprelu",),
    "threshold_init": ("jumprelu",),
    "prefixes": ("matryoshka",),
}


#: the type of every :class:`SAEConfig` field as stored in a dictionary's ``config.json``
#: (all required there: a missing key is an error, never the dataclass default)
SAE_CONFIG_SCHEMA: dict[str, schema.Field] = {
    "width": schema.integer(1),
    "size": schema.integer(1),
    "kind_of_sae": schema.one_of(*ARCHITECTURES),
    "k": schema.integer(1),
    "l1": schema.number(0),
    "lr": schema.number(above=0),
    "epochs": schema.integer(1),
    "batch_size": schema.integer(1),
    "seed": schema.integer(),
    "center": schema.boolean(),
    "normalize": schema.boolean(),
    "dead_steps": schema.integer(0),
    "aux_k": schema.nullable(schema.integer(1)),
    "aux_coef": schema.number(0),
    # absent from dictionaries trained before rare-latent splitting (SAEConfig.from_dict: 0)
    "split_every": schema.optional(schema.integer(0)),
    # one architecture's fields (ARCHITECTURE_FIELDS): present exactly for it (SAEConfig.from_dict)
    "l0": schema.optional(schema.number(0)),
    "bandwidth": schema.optional(schema.nullable(schema.number(above=0))),
    "threshold_init": schema.optional(schema.nullable(schema.number(above=0))),
    "prefixes": schema.optional(schema.nullable(schema.array(schema.integer(1), nonempty=True))),
}


@dataclass
class DataStats:
    """What one streaming pass measured about the training data (before any normalisation).

    ``mean [width]`` (float64); ``std_norm = sqrt(sum_i var_i)`` with ``var_i`` the
    population variance of dimension ``i``, i.e. the RMS distance of a vector from
    the mean; ``gamma = ||mean|| / std_norm``: how far the data sits from the origin
    relative to its spread (large gamma: an uncentred SAE spends capacity on the
    offset). ``gamma`` is None when the data has no spread. ``sha256`` hashes the
    data as float32, little-endian, row-major: independent of how it was batched.
    """

    n: int
    mean: torch.Tensor
    mean_norm: float
    std_norm: float
    gamma: float | None
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "n_vectors": self.n,
            "mean_norm": self.mean_norm,
            "std_norm": self.std_norm,
            "gamma": self.gamma,
            "data_sha256": self.sha256,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataStats) and self.to_json() == other.to_json() and torch.equal(self.mean, other.mean)


class SparseAutoencoder(torch.nn.Module):
    """An SAE that reads and writes activations in their original space.

    Parameters (normalised space): ``W_enc [width, size]``, ``b_enc [size]``,
    ``W_dec [size, width]`` (unit rows), ``b_dec [width]``; buffers ``center [width]``
    and the scalar ``scale`` (see the module docstring). For raw ``x [n, width]``::

        z     = (x - center) / scale
        codes = act((z - b_dec) @ W_enc + b_enc)              # [n, size]
        x_hat = center + scale * (codes @ W_dec + b_dec)       # [n, width]
    """

    center: torch.Tensor  # buffer [width], registered in __init__
    scale: torch.Tensor  # buffer [] (scalar), registered in __init__
    threshold: torch.Tensor  # buffer [] (scalar), batchtopk only
    jump_threshold: torch.nn.Parameter  # [size], jumprelu only (stored as log_threshold)

    def __init__(self, config: SAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        g = generator if generator is not None else torch.Generator().manual_seed(config.seed)
        w = torch.randn(config.size, config.width, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(w)
        self.W_enc = torch.nn.Parameter(w.T.clone())  # tied initialisation, then trained freely
        self.b_enc = torch.nn.Parameter(torch.zeros(config.size))
        self.b_dec = torch.nn.Parameter(torch.zeros(config.width))
        self.register_buffer("center", torch.zeros(config.width))
        self.register_buffer("scale", torch.ones(()))
        if config.architecture in THRESHOLD_ARCHITECTURES:  # estimated during training (train_sae); 0 until then
            self.register_buffer("threshold", torch.zeros(()))
        if config.architecture == "jumprelu":
            # trained directly (see _JumpReLU); stored as its log, the format's key (_jumprelu_hooks)
            self.jump_threshold = torch.nn.Parameter(torch.full((config.size,), config.effective_threshold_init))
            self._register_state_dict_hook(_save_log_threshold)
            self._register_load_state_dict_pre_hook(_load_log_threshold)
        self.stats: DataStats | None = None

    @property
    def thresholds(self) -> torch.Tensor | None:
        """Per-latent thresholds ``[size]`` on the pre-activations at inference (a code is its
        pre-activation where that exceeds the threshold, else 0): jumprelu's learned ``theta``,
        batchtopk's one estimated threshold repeated; None for the other architectures."""
        if self.config.architecture == "jumprelu":
            return self.jump_threshold.detach()
        if self.config.architecture in THRESHOLD_ARCHITECTURES:
            return self.threshold.expand(self.config.size)
        return None

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw ``x [n, width]`` -> the SAE's input space ``z [n, width]``."""
        return (torch.as_tensor(x, dtype=self.W_dec.dtype, device=self.W_dec.device) - self.center) / self.scale

    def pre_activations(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised ``z [n, width]`` -> pre-activations ``[n, size]``."""
        return (z - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``[n, size]`` -> codes, as at inference (training differs for batchtopk,
        whose batch-wide top k is replaced by its estimated threshold, see :func:`train_codes`)."""
        arch = self.config.architecture
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            return pre * (pre > self.jump_threshold)
        if arch in THRESHOLD_ARCHITECTURES:
            return torch.relu(pre) * (pre > self.threshold)
        return _DenseTopK.apply(pre, self.config.k)[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw activations ``[n, width]`` -> codes ``[n, size]`` (non-negative)."""
        return self.activate(self.pre_activations(self.normalise(x)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[n, size]`` -> reconstruction in the original space ``[n, width]``."""
        return (codes @ self.W_dec + self.b_dec) * self.scale + self.center

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)
        return self.decode(codes), codes

    @property
    def directions(self) -> torch.Tensor:
        """Unit directions ``[size, width]`` in the ORIGINAL activation space.

        ``x_hat = center + scale * b_dec + sum_j codes_j * (scale * W_dec[j])``: latent ``j``
        moves a raw activation along ``W_dec[j]`` by ``codes_j * scale``. ``scale`` is a
        positive scalar and ``center`` only an offset, so the raw-space direction of
        latent ``j`` is ``W_dec[j] / ||W_dec[j]||`` (already unit norm after training).
        """
        w = self.W_dec.detach()
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _topk_codes(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TopK codes ``[n, size]`` of pre-activations ``pre [n, size]``: the ``k`` largest of each row,
    ReLU'd, the rest 0; with the selected latents ``indices [n, k]`` and their codes ``values
    [n, k]`` (in no particular order: ``sorted=False`` finds the same set faster)."""
    top = torch.topk(pre, k, dim=-1, sorted=False)
    values = torch.relu(top.values)
    # in place into new zeros (scatter_: no copy of them), the same values and gradient as scatter
    return torch.zeros_like(pre).scatter_(-1, top.indices, values), top.indices, values


#: :class:`_DenseTopK` finds each row's ``k`` largest pre-activations by ``k`` passes of row maxima
#: (:func:`_topk_mask`) up to this ``k``; above it ``torch.topk``'s per-row selection costs less
#: (at ``k`` 8 of 128 latents the passes take about a third of ``torch.topk``'s time on a CPU)
FAST_TOPK_MAX_K = 16
#: :func:`_topk_mask` works through the pre-activations in blocks of about this many entries (2 MB of
#: float32: a batch of 4096 at 128 latents in one block, which measured faster on 1 and 2 threads
#: than blocks of 256 to 2048 rows; each pass is a parallel region, so fewer blocks wait less on a
#: loaded machine), bounding the scratch copy at larger sizes
TOPK_BLOCK_ENTRIES = 1 << 19


def _topk_mask(pre: torch.Tensor, k: int, out: torch.Tensor) -> bool:
    """Write 1 into ``out [n, size]`` (``pre``'s dtype) at the ``k`` largest entries of each row of
    ``pre [n, size]`` and 0 elsewhere, with float operations only (a comparison into a float tensor
    is vectorised, into a boolean one it is not): ``k - 1`` times, each row's maximum and every entry
    equal to it are pushed to the bottom of a scratch copy, whose row maxima are then each row's
    ``k``-th largest value ``t``, and ``out = pre >= t``. Returns whether every row holds exactly
    ``k`` ones: then they are exactly ``torch.topk``'s selection (the ``k`` entries at or above a
    threshold are the ``k`` largest, with no choice to make among ties); otherwise (a tie at the
    ``k``-th value, NaN, values near the float's range) ``out`` is unspecified and the caller
    selects with ``torch.topk``."""
    n, size = pre.shape
    rows = max(1, TOPK_BLOCK_ENTRIES // size)
    scratch = torch.empty(min(rows, n), size, dtype=pre.dtype, device=pre.device)
    bottom = -torch.finfo(pre.dtype).max
    for i in range(0, n, rows):
        q, f = pre[i : i + rows], out[i : i + rows]
        p = scratch[: len(q)].copy_(q)
        for _ in range(k - 1):
            torch.ge(p, p.amax(-1, keepdim=True), out=f)
            p.addcmul_(f, f, value=bottom)  # p + bottom where f is 1, p (+ -0.0) where it is 0
        torch.ge(q, p.amax(-1, keepdim=True), out=f)
    return bool((out.sum(-1) == k).all())


class _DenseTopK(torch.autograd.Function):
    """TopK codes ``[n, size]`` of pre-activations ``pre [n, size]``, bitwise :func:`_topk_codes`'
    (the ``k`` largest of each row, ReLU'd, the rest 0), with ``active [n, size]``: 1 where a code
    is positive, else 0 (``pre``'s dtype; not differentiable). On the CPU with ``k <=``
    :data:`FAST_TOPK_MAX_K` the selection is :func:`_topk_mask`'s and the codes ``relu(pre) *
    mask``, without a per-row sort or a scatter; else (or when a row's selection is ambiguous)
    ``torch.topk``'s. Backward: ``d pre = d codes * active``, the gradient of the scatter of ReLU'd
    top-k values (the same values; unselected entries may be ``-0.0`` for ``+0.0``)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        active = torch.empty_like(pre)
        if pre.device.type == "cpu" and k <= FAST_TOPK_MAX_K and _topk_mask(pre, k, active):
            codes = torch.relu(pre).mul_(active)
        else:
            codes = _topk_codes(pre, k)[0]
        torch.gt(codes, 0, out=active)
        ctx.save_for_backward(active)
        ctx.mark_non_differentiable(active)
        return codes, active

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor, _g_active: Any) -> tuple[torch.Tensor, None]:
        (active,) = ctx.saved_tensors
        return g * active, None


def _fired(indices: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """How many vectors each of ``size`` latents fired on (code > 0), from the selected latents
    ``indices [b, k]`` and their codes ``values [b, k]``: ``(codes > 0).sum(0)``, int64, without a
    pass over the dense codes."""
    hits = (values > 0).reshape(-1).to(torch.long)
    return torch.zeros(size, dtype=torch.long, device=indices.device).index_add_(0, indices.reshape(-1), hits)


class _Source:
    """Uniform access to an in-memory array or a factory of streamed blocks."""

    def __init__(self, data: Data, width: int):
        self.width = width
        if isinstance(data, (torch.Tensor, np.ndarray)):
            self.array: torch.Tensor | None = self._check(data, "data")
            if len(self.array) == 0:
                raise SAEDataError("no training vectors (data has 0 rows)")
            self.factory: Callable[[], Iterable[Any]] | None = None
        elif callable(data):
            self.array, self.factory = None, data
        else:
            raise SAEDataError(
                f"data must be a [n, {width}] tensor or array, or a callable returning batches;"
                f" got {type(data).__name__}"
            )

    def _check(self, block: Any, what: str) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(block) if not isinstance(block, torch.Tensor) else block)
        if t.ndim != 2 or t.shape[1] != self.width:
            raise SAEDataError(f"{what} must have shape [n, {self.width}]; got {list(t.shape)}")
        return t.detach().to("cpu", torch.float32).contiguous()

    def blocks(self, chunk: int = 65_536) -> Iterator[torch.Tensor]:
        """The data in its stored order, as float32 blocks ``[b, width]``."""
        if self.array is not None:
            for i in range(0, len(self.array), chunk):
                yield self.array[i : i + chunk]
        elif self.factory is not None:  # exactly one of array and factory is set
            for j, block in enumerate(self.factory()):
                yield self._check(block, f"batch {j}")

    def batches(self, batch_size: int, g: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of training batches: a seeded shuffle of the whole array, or of each
        streamed block (then re-cut to ``batch_size``, carrying the remainder over)."""
        if self.array is not None:
            perm = torch.randperm(len(self.array), generator=g)
            # gathered into one buffer reused for every batch (no allocation per batch): a batch is
            # valid until the next one is drawn, which is how train_sae uses it
            buf = torch.empty(min(batch_size, len(perm)), self.width)
            for i in range(0, len(perm), batch_size):
                idx = perm[i : i + batch_size]
                yield torch.index_select(self.array, 0, idx, out=buf[: len(idx)])
            return
        rest = torch.empty(0, self.width)
        for block in self.blocks():
            buf = torch.cat([rest, block[torch.randperm(len(block), generator=g)]])
            full = len(buf) - len(buf) % batch_size
            for i in range(0, full, batch_size):
                yield buf[i : i + batch_size]
            rest = buf[full:]
        if len(rest):
            yield rest


def data_stats(data: Data, width: int) -> DataStats:
    """One streaming pass: mean, spread, gamma and hash (see :class:`DataStats`)."""
    return _stats(_Source(data, width))


def _stats(source: _Source) -> DataStats:
    stats, finish = _stats_hashing(source)
    finish()
    return stats


def _stats_hashing(source: _Source) -> tuple[DataStats, Callable[[], None]]:
    """:func:`_stats` whose hash may still be running: returns the statistics and ``finish()``,
    which waits for the hash and writes it into ``stats.sha256`` (empty until then). An in-memory
    array is hashed in one call over its whole buffer on a thread of its own (hashlib releases the
    GIL), left running while the caller goes on (:func:`train_sae` trains meanwhile): the same
    digest as hashing it block by block. A streamed source is hashed block by block while this
    thread sums, each block's hash awaited before the next is drawn (a source may refill one
    buffer), so ``finish()`` has nothing left to wait for."""
    h = hashlib.sha256()
    n, shift = 0, None
    s1 = torch.zeros(source.width, dtype=torch.float64)
    s2 = torch.zeros(source.width, dtype=torch.float64)
    work: list[torch.Tensor] = []
    hasher = ThreadPoolExecutor(max_workers=1)
    whole: Future[None] | None = None
    if source.array is not None:  # the buffer itself (no copy: contiguous), alive as long as the source
        whole = hasher.submit(h.update, source.array.numpy().astype("<f4", copy=False).data)
    try:
        for block in source.blocks():
            pending: Future[None] | None = None
            if whole is None:
                pending = hasher.submit(h.update, block.numpy().astype("<f4", copy=False).data)
            if len(block) == 0:
                if pending is not None:
                    pending.result()
                continue
            # float64 in one buffer reused for every block (exact: float32 -> float64); a fresh 64 MB
            # tensor per block is mapped and zero-filled page by page (see _buffer). A copy, then the
            # shift subtracted in place: one mixed-dtype subtraction is not vectorised (2.5 against
            # 1.2 ms a 65536x32 block)
            d = _buffer(work, block, source.width, torch.float64).copy_(block)
            if shift is None:  # shifted sums: stable variance even when |mean| >> std
                shift = d[0].clone()
            d -= shift  # in place: the same values as d - shift, without another [b, width] float64 buffer
            s1 += d.sum(0)
            s2 += d.mul_(d).sum(0)
            # a NaN or infinity anywhere in the block makes its column's sum of squares NaN or infinite
            # (squares of finite float32 differences cannot overflow float64): one check per block
            # instead of a pass over the data
            if not bool(torch.isfinite(s2).all()):
                raise SAEDataError("training data holds NaN or infinite values")
            n += len(block)
            if pending is not None:
                pending.result()
    finally:
        hasher.shutdown(wait=False)  # a whole array's hash goes on; finish() waits for it
    if n == 0 or shift is None:  # shift is None exactly when n == 0
        raise SAEDataError("no training vectors (every batch was empty)")
    mean_shifted = s1 / n
    var = (s2 / n - mean_shifted**2).clamp_min(0.0)
    mean = shift + mean_shifted
    mean_norm, std_norm = float(mean.norm()), float(var.sum().sqrt())
    gamma = mean_norm / std_norm if std_norm > 0 else None
    stats = DataStats(n, mean, mean_norm, std_norm, gamma, "")

    def finish() -> None:
        if whole is not None:
            whole.result()
        stats.sha256 = h.hexdigest()

    return stats, finish


def _scale_for(stats: DataStats, config: SAEConfig) -> float:
    """The scalar ``s`` of ``z = (x - c) / s``: ``E||z||^2 = width`` (SAELens' convention), or 1 for
    jumprelu, whose defaults are the paper's in that space (unit mean squared norm: Rajamanoharan et
    al. 2024; Lieberum et al. 2024, "Gemma Scope", sec. 3.1)."""
    if not config.normalize:
        return 1.0
    offset = 0.0 if config.center else stats.mean_norm  # E||x - c||^2 = sum var + ||mean - c||^2
    per = 1 if config.architecture == "jumprelu" else config.width
    s = math.sqrt((stats.std_norm**2 + offset**2) / per)
    return s if s > 0 else 1.0  # all vectors equal the centre: nothing to rescale


#: :func:`train_sae` measures its final metrics on at most this many vectors (``eval_vectors``): a
#: seeded uniform sample without replacement when the data holds more, every vector otherwise (so
#: runs of up to this many vectors are measured exactly as before). SAELens (``n_eval_batches``) and
#: dictionary_learning (``evaluate`` over a few batches) also measure on a bounded sample. At this
#: size the sampling's standard error of ``explained_variance`` (recorded as
#: ``explained_variance_se``) is about ``(1 - explained_variance) * cv / 256``, with ``cv`` the
#: coefficient of variation of the per-vector squared error (about 1 on planted data: 4e-4 at 0.9)
EVAL_MAX_VECTORS = 65_536


def eval_sample(n: int, m: int, seed: int) -> torch.Tensor:
    """Row indices ``[min(m, n)]`` (int64, increasing) of a uniform sample without replacement of
    ``m`` of ``n`` rows, drawn by a CPU generator seeded with ``seed`` (its own: the training's
    generator is not touched); every row when ``m >= n``."""
    if m >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m].sort().values


def _sampled(source: _Source, rows: torch.Tensor) -> _Source:
    """The rows ``rows`` (increasing, of the data's stored order) of ``source``, as a source of
    blocks: one block of them per block of the data (memory bounded by a block)."""
    if source.array is not None:
        return _Source(source.array.index_select(0, rows), source.width)

    def blocks() -> Iterator[torch.Tensor]:
        start, j = 0, 0
        for block in source.blocks():
            end = start + len(block)
            hi = int(torch.searchsorted(rows, end))
            if hi > j:
                yield block.index_select(0, rows[j:hi] - start)
            start, j = end, hi

    return _Source(blocks, source.width)


@torch.no_grad()
def evaluate(
    sae: SparseAutoencoder,
    data: Data,
    batch_size: int = 4096,
    stats: DataStats | None = None,
    max_vectors: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure an SAE on data (one pass, original space).

    ``explained_variance = 1 - SSE / SST`` with ``SSE = sum ||x - x_hat||^2`` and
    ``SST = sum ||x - mean(x)||^2`` (None when SST is 0); ``l0``: mean number of
    non-zero codes per vector; ``dead_fraction``: share of latents that never fired
    (code > 0) on any evaluated vector. The SAE runs where its weights are; the sums are
    taken in float64. ``stats``: :func:`data_stats` of this same ``data`` when already measured
    (:func:`train_sae` passes its statistics pass): ``SST = n std_norm^2`` is then taken from them
    (the same float64 sums, to float64 round-off) instead of being summed again.

    ``max_vectors``: measure on at most this many vectors (None: all). When the data holds more
    (``n``), a uniform sample of ``m = max_vectors`` of them without replacement
    (:func:`eval_sample`, seeded by ``seed``) is measured: ``SSE`` is estimated as ``n / m`` times
    the sample's sum, ``SST`` is the whole data's (from ``stats``, measured here when not given),
    ``l0`` is the sample's mean and ``dead_fraction`` the share of latents that fired on none of the
    sampled vectors (an upper bound on the whole data's). ``explained_variance_se`` is the
    sampling's standard error of ``explained_variance``: ``n / SST * sqrt((1 - m / n) s^2 / m)``
    with ``s^2`` the sample variance of the per-vector squared errors (simple random sampling with
    the finite-population correction), 0 when every vector was measured. The metrics also give
    ``n_vectors`` (the data's vectors) and ``evaluated_vectors`` (``m``, or ``n``).

    ``topk`` dictionaries (any size) are measured from their top-k latents alone
    (:func:`_evaluate_topk`): float32 per vector, float64 across vectors, so
    ``explained_variance`` agrees with the dense pass to float32 round-off (measured below 1e-6
    absolute, tests/test_sae_speed_equivalence.py), ``l0`` and ``dead_fraction`` exactly.
    """
    source = _Source(data, sae.config.width)
    population = None
    if max_vectors is not None:
        check.integer("max_vectors", max_vectors, low=1)
        stats = stats if stats is not None else _stats(source)
        if stats.n > max_vectors:
            source, population = _sampled(source, eval_sample(stats.n, max_vectors, seed)), stats.n
    if sae.config.architecture == "topk":
        return _evaluate_topk(sae, source, batch_size, stats, population)
    n, sse, l0 = 0, 0.0, 0.0
    device = sae.W_dec.device
    fired = torch.zeros(sae.config.size, dtype=torch.bool)
    shift, s1, s_sq = None, torch.zeros(sae.config.width, dtype=torch.float64), 0.0
    sse2 = 0.0  # sum of squared per-vector errors: the sample's variance (only when sampling)
    for block in source.blocks():
        for i in range(0, len(block), batch_size):
            x = block[i : i + batch_size]
            recon, codes = (t.cpu() for t in sae(x.to(device)))  # .cpu(): no copy on the CPU
            xd = x.double()
            sq = (xd - recon.double()) ** 2
            sse += float(sq.sum())
            if population is not None:
                sse2 += float((sq.sum(1) ** 2).sum())
            active = codes > 0
            l0 += float(active.sum())
            fired |= active.any(0)
            if stats is None:
                if shift is None:
                    shift = xd[0].clone()
                d = xd - shift
                s1 += d.sum(0)
                s_sq += float((d * d).sum())
            n += len(x)
    if n == 0:
        raise SAEDataError("no vectors to evaluate on")
    return _metrics(sse, sse2, _sst(stats, population or n, s1, s_sq), n, population, l0 / n, fired)


def _sst(stats: DataStats | None, n: int, s1: torch.Tensor, s_sq: float) -> float:
    """``SST = sum ||x - mean||^2`` over ``n`` vectors: from the statistics pass (``n std_norm^2``)
    when given, else from the shifted sums ``s1 [width]`` and ``s_sq`` of this pass."""
    if stats is not None:
        if stats.n != n:
            raise SAEDataError(f"stats describe {stats.n} vectors but the data holds {n}")
        return n * stats.std_norm**2
    return s_sq - float((s1 * s1).sum()) / n


def _explained(sse: float, sst: float) -> float | None:
    return 1.0 - sse / sst if sst > 0 else None


def _metrics(
    sse: float, sse2: float, sst: float, m: int, population: int | None, l0: float, fired: torch.Tensor
) -> dict[str, Any]:
    """:func:`evaluate`'s metrics from the sums over ``m`` evaluated vectors: every vector when
    ``population`` is None, else a uniform sample of ``m`` of ``population`` (``SSE`` scaled up,
    its standard error from ``sse2``, the sum of squared per-vector errors)."""
    se: float | None = 0.0 if sst > 0 else None
    if population is not None:
        var = max(0.0, (sse2 - sse * sse / m) / (m - 1)) if m > 1 else 0.0
        se = population / sst * math.sqrt((1 - m / population) * var / m) if sst > 0 else None
        sse = sse * population / m
    return {
        "explained_variance": _explained(sse, sst),
        "explained_variance_se": se,
        "l0": l0,
        "dead_fraction": 1.0 - float((fired > 0).float().mean()),
        "n_vectors": population or m,
        "evaluated_vectors": m,
    }


def _evaluate_topk(
    sae: SparseAutoencoder, source: _Source, batch_size: int, stats: DataStats | None, population: int | None = None
) -> dict[str, Any]:
    """:func:`evaluate` for a ``topk`` dictionary: the same metrics from the top-k latents alone
    (decoded with an ``embedding_bag``, no dense codes) and float32 arithmetic per vector, summed
    over vectors in float64, without float64 copies of the batches. The sums run in another order
    than the dense pass's, so the metrics agree with it to float32 round-off (``explained_variance``
    to about 1e-6), not bitwise; ``l0`` and ``dead_fraction`` are counts, equal. ``population``:
    the data's size when ``source`` is a sample of it (:func:`evaluate`)."""
    cfg = sae.config
    dev = sae.W_dec.device  # the SAE runs where its weights are; the sums stay there too
    n, l0 = 0, 0
    sse = s_sq = sse2 = torch.zeros((), dtype=torch.float64, device=dev)
    fired = torch.zeros(cfg.size, dtype=torch.long, device=dev)
    shift, s1 = None, torch.zeros(cfg.width, dtype=torch.float64, device=dev)
    workspace: list[torch.Tensor] = []  # one buffer for every batch's pre-activations (_buffer)
    for block in source.blocks():
        for i in range(0, len(block), batch_size):
            x = block[i : i + batch_size].to(dev)
            u = sae.normalise(x) - sae.b_dec
            pre = torch.addmm(sae.b_enc, u, sae.W_enc, out=_buffer(workspace, u, cfg.size))
            top = torch.topk(pre, cfg.k, dim=-1, sorted=False)
            values = top.values.relu_()
            decoded = torch.nn.functional.embedding_bag(top.indices, sae.W_dec, per_sample_weights=values, mode="sum")
            err = decoded.add_(sae.b_dec).mul_(sae.scale).add_(sae.center).sub_(x)  # x_hat - x, in place
            per_vector = err.mul_(err).sum(1)
            sse = sse + per_vector.sum(dtype=torch.float64)
            if population is not None:
                sse2 = sse2 + per_vector.double().square().sum()
            counts = _fired(top.indices, values, cfg.size)  # the same counts as a bincount, no boolean gather
            l0 += int(counts.sum())
            fired += counts
            if stats is None:
                if shift is None:
                    shift = x[0].clone()
                d = x - shift
                s1 += d.sum(0, dtype=torch.float64)
                s_sq = s_sq + (d * d).sum(1).sum(dtype=torch.float64)
            n += len(x)
    if n == 0:
        raise SAEDataError("no vectors to evaluate on")
    sst = _sst(stats, population or n, s1, float(s_sq))
    return _metrics(float(sse), float(sse2), sst, n, population, l0 / n, fired)


def train_sae(
    data: Data,
    config: SAEConfig,
    progress: Callable[[int, int, float], None] | None = None,
    allow_no_variance: bool = False,
    device: Any = "auto",
    eval_vectors: int | None = EVAL_MAX_VECTORS,
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Train an SAE on ``data`` and measure it.

    ``data``: a tensor or array ``[n, width]`` (shuffled each epoch with the seeded
    generator), or a callable returning an iterable of ``[b, width]`` blocks; it is
    called once for the statistics pass, once per epoch and once for the final
    evaluation, and must yield the same data each time (each block is shuffled,
    then re-cut into ``batch_size`` batches). ``progress(epoch, epochs, mean_loss)``
    is called after each epoch.

    Returns the SAE (with ``.stats`` set) and metrics: ``explained_variance``,
    ``explained_variance_se``, ``l0``, ``dead_fraction``, ``evaluated_vectors`` (from
    :func:`evaluate` with the final weights, on every vector when the data holds at most
    ``eval_vectors`` of them, else on a seeded uniform sample of ``eval_vectors``: see
    :data:`EVAL_MAX_VECTORS`; None measures every vector), ``final_loss`` / ``final_recon_loss`` (mean over the last epoch,
    normalised space), ``steps``, ``epochs``, ``seconds``, ``n_vectors``, ``gamma``
    (see :class:`DataStats`), ``resampled`` (relu: latents resampled in total) and
    ``split`` (topk, batchtopk, matryoshka: rare latents split off frequent ones in total).

    Raises :class:`SAEDataError` for empty or non-finite data and :class:`NoVarianceError`
    (before any training) when the vectors do not vary (:func:`has_variance`), unless
    ``allow_no_variance`` (a deliberate reference, e.g. the analyses' flat signals: the
    result is then a dictionary of dead latents, and the metrics say so).

    ``device``: where the SAE trains (:func:`steerlab.devices.resolve`: ``"auto"``, ``"cpu"``,
    ``"cuda[:N]"``, ``"mps"``, a torch.device); the data stays on the CPU and each batch moves
    there, shuffled and initialised by the same CPU generator on every device. The SAE is
    returned on the CPU, where steerlab saves and analyses it; the metrics say where it trained
    (``device``).
    """
    from steerlab import devices

    t0 = time.perf_counter()
    dev = devices.use(devices.resolve(device))
    source = _Source(data, config.width)
    # the hash of an in-memory array goes on while the SAE trains (awaited before anything is returned)
    stats, finish_hash = _stats_hashing(source)
    if not allow_no_variance and not has_variance(stats):
        finish_hash()
        raise NoVarianceError(
            f"the training data has no variance: its {stats.n} vectors are all equal (spread "
            f"{stats.std_norm:.3g} against a norm of {stats.mean_norm:.3g}); every latent would be "
            "dead",
            stats,
        )
    g = torch.Generator().manual_seed(config.seed)
    sae = SparseAutoencoder(config, generator=g).to(dev)  # initialised on the CPU: the same on every device
    center = stats.mean if config.center else torch.zeros(config.width, dtype=torch.float64)
    scale = _scale_for(stats, config)
    with torch.no_grad():
        sae.center.copy_(center.float())
        sae.scale.fill_(scale)
        sae.b_dec.copy_(((stats.mean - center) / scale).float())  # start at the data mean
    sae.stats = stats
    opt = torch.optim.Adam(sae.parameters(), lr=config.learning_rate, betas=_adam_betas(config))
    sparse = uses_sparse_topk(config)
    # the sparse step's pre-activations, one buffer for every step: a step's are read only by that
    # step's AuxK loss and backward, done before the next step writes them
    workspace: list[torch.Tensor] = []
    since_fired = torch.zeros(config.size, dtype=torch.long, device=dev)
    step, resampled, split, total_steps = 0, 0, 0, None
    fired = torch.zeros(config.size, device=dev)  # vectors each latent fired on since the last split check
    seen = 0
    loss_sum = recon_sum = 0.0
    for epoch in range(config.epochs):
        loss_sum = recon_sum = 0.0
        epoch_steps = 0
        for batch in source.batches(config.batch_size, g):
            batch = batch.to(dev)  # (no copy on the CPU)
            z = (batch - sae.center) / sae.scale
            if sparse:  # the same step over the k selected latents of each vector (uses_sparse_topk)
                by_latent = _ByLatent(config.size)  # shared by the two backwards
                values, indices, pre = _TopKEncode.apply(
                    z - sae.b_dec, sae.W_enc, sae.b_enc, config.k, by_latent, workspace
                )
                z_hat = _SparseDecode.apply(values, indices, sae.W_dec, by_latent) + sae.b_dec
                with torch.no_grad():
                    counts = _fired(indices, values, config.size)
            else:
                pre = sae.pre_activations(z)
                if config.architecture in TOPK_CODES:  # train_codes' own codes, with where they fired to count
                    codes, active = _DenseTopK.apply(pre, config.k)
                    with torch.no_grad():
                        counts = active.sum(0)  # (float: exact up to 2^24 vectors a batch)
                else:
                    codes = train_codes(sae, pre)
                    with torch.no_grad():
                        counts = (codes > 0).sum(0)
                z_hat = codes @ sae.W_dec + sae.b_dec
            recon = ((z_hat - z) ** 2).sum(-1).mean()
            with torch.no_grad():
                since_fired += 1
                since_fired.masked_fill_(counts > 0, 0)
                fired += counts
                seen += len(batch)
                dead = since_fired >= config.dead_steps if config.dead_steps else None
            loss = recon
            if config.architecture == "matryoshka":
                loss = loss + _prefix_loss(sae, codes, z)
            if config.architecture == "relu":
                loss = loss + config.l1 * codes.sum(-1).mean()
            elif config.architecture == "jumprelu":
                l0_now = _step(pre, sae.jump_threshold, config.effective_bandwidth).sum(-1).mean()
                loss = loss + _l0_coefficient(config, step, stats.n) * l0_now
            elif dead is not None and config.aux_coef > 0 and bool(dead.any()):
                residual = (z - z_hat).detach()
                loss = loss + config.aux_coef * _aux_loss(sae, pre, residual, dead, config.effective_aux_k, sparse)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                w, grad = sae.W_dec, sae.W_dec.grad
                if grad is not None:  # always set: W_dec is in every loss
                    grad -= (grad * w).sum(1, keepdim=True) * w  # keep the step tangent to the unit sphere
            opt.step()
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))  # = /=, typed
                if config.architecture == "jumprelu":  # a threshold stays positive (stored as its log)
                    sae.jump_threshold.clamp_(min=MIN_THRESHOLD)
            step += 1
            epoch_steps += 1
            loss_sum += float(loss.detach())
            recon_sum += float(recon.detach())
            if (
                config.architecture == "relu"
                and dead is not None
                and step % config.dead_steps == 0
                and _may_resample(step, total_steps, config.epochs)
                and bool(dead.any())
            ):
                resampled += _resample(sae, opt, dead, (z - z_hat).detach(), g)
                since_fired[dead] = 0
            if config.architecture in SPLIT_ARCHITECTURES and config.split_every and step % config.split_every == 0:
                if _may_resample(step, total_steps, config.epochs, SPLIT_UNTIL):
                    if sparse:  # the dense codes, only at the steps that split
                        codes = torch.zeros(len(z), config.size, device=z.device).scatter(-1, indices, values.detach())
                    split += _split_rare(sae, opt, fired / seen, codes.detach(), (z - z_hat).detach())
                fired.zero_()
                seen = 0
        if epoch_steps == 0:
            raise SAEDataError("an epoch yielded no training batches")
        total_steps = epoch_steps * config.epochs
        if progress:
            progress(epoch + 1, config.epochs, loss_sum / epoch_steps)
    finish_hash()
    sae.eval()
    if config.architecture == "jumprelu":
        snap_thresholds(sae)
    metrics = evaluate(
        sae, data if source.array is None else source.array, stats=stats, max_vectors=eval_vectors, seed=config.seed
    )
    sae.cpu()  # (a no-op on the CPU)
    metrics.update(
        {
            "final_loss": loss_sum / epoch_steps,
            "final_recon_loss": recon_sum / epoch_steps,
            "steps": step,
            "epochs": config.epochs,
            "gamma": stats.gamma,
            "resampled": resampled,
            "split": split,
            "seconds": time.perf_counter() - t0,
            "device": str(dev),
        }
    )
    return sae, metrics


def train_codes(sae: SparseAutoencoder, pre: torch.Tensor) -> torch.Tensor:
    """Codes ``[b, size]`` of a training batch's pre-activations ``[b, size]``. As at inference
    (:meth:`SparseAutoencoder.activate`) except: batchtopk keeps the ``k * b`` largest ReLU'd
    pre-activations of the whole batch (and updates its inference threshold), jumprelu passes
    gradients to its thresholds through the straight-through estimator (:class:`_JumpReLU`)."""
    arch = sae.config.architecture
    if arch in THRESHOLD_ARCHITECTURES:
        return _batch_topk(sae, pre)
    if arch == "jumprelu":
        return _JumpReLU.apply(pre, sae.jump_threshold, sae.config.effective_bandwidth)
    return sae.activate(pre)


#: the architectures whose training codes are :meth:`SparseAutoencoder.activate`'s per-vector top k
TOPK_CODES = ("topk", "matryoshka")

#: the architectures trained with BatchTopK codes and inferring with one estimated threshold. Not
#: matryoshka: with BatchTopK codes (the 2025 paper's) it recovered 0.719, 0.641, 0.781 of the 64/64
#: planted test (seeds 6-8) against 0.906, 0.875, 0.969 with TopK codes (docs/sae.md)
THRESHOLD_ARCHITECTURES = ("batchtopk",)


#: the TopK training step works on the selected latents alone (:func:`uses_sparse_topk`) from
#: this many latents per selected one (``size / k``) up: below it the dense matrix products of a
#: small dictionary cost less than gathering and scattering rows (docs/sae-performance.md)
SPARSE_TOPK_MIN_RATIO = 32


def uses_sparse_topk(config: SAEConfig) -> bool:
    """Whether :func:`train_sae` takes the sparse TopK step for ``config``: ``topk`` with
    ``size >= SPARSE_TOPK_MIN_RATIO * k``. The sparse step computes the same loss and gradients
    as the dense one (:class:`_TopKEncode`, :class:`_SparseDecode`), with ``O(b k width)``
    instead of ``O(b size width)`` work in the decoder and the encoder's backward; sums run in
    another order, so weights agree with the dense step's to float32 round-off, not bitwise."""
    return config.architecture == "topk" and config.size >= SPARSE_TOPK_MIN_RATIO * config.k


def _rows(indices: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """The sparse ``[b, size]`` matrix (CSR) holding ``values [b, k]`` at column ``indices [b, k]``
    of each row (distinct in a row, as top k gives them, in top k's order: the CSR products used
    here, ``S^T @ dense`` and ``sampled_addmm``, do not need a row's columns sorted, and
    tests/test_sae_speed_equivalence.py checks them against dense products on unsorted rows)."""
    b, k = indices.shape
    crow = torch.arange(0, b * k + 1, k, dtype=indices.dtype, device=indices.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are tested
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, indices.reshape(-1), values.reshape(-1), (b, size))


@overload
def _buffer(
    workspace: list[torch.Tensor], x: torch.Tensor, size: int, dtype: torch.dtype | None = None
) -> torch.Tensor: ...
@overload
def _buffer(
    workspace: list[torch.Tensor] | None, x: torch.Tensor, size: int, dtype: torch.dtype | None = None
) -> torch.Tensor | None: ...
def _buffer(
    workspace: list[torch.Tensor] | None, x: torch.Tensor, size: int, dtype: torch.dtype | None = None
) -> torch.Tensor | None:
    """A ``[len(x), size]`` buffer (``dtype``, default ``x``'s) for pre-activations, reused from ``workspace`` (a list
    holding one buffer, allocated on first use) across the batches of a run: a fresh
    ``[4096, 1024]`` result per batch is 16 MB the allocator maps and the kernel zero-fills page by
    page each time, which cost as much as a fifth of a step at 128x1024 (docs/sae-performance.md).
    None without a workspace (a new tensor). The values are the same either way."""
    if workspace is None:
        return None
    dtype = dtype or x.dtype
    w = workspace[0] if workspace else None
    if w is None or w.shape[0] < len(x) or w.shape[1] != size or w.dtype != dtype or w.device != x.device:
        workspace[:] = [torch.empty(len(x), size, dtype=dtype, device=x.device)]
    return workspace[0][: len(x)]


class _ByLatent:
    """A batch's selected latents ``indices [b, k]`` grouped by latent: the pattern of the
    transposed sparse codes ``S^T [size, b]`` (CSR, each latent's rows in increasing order), built
    once per step (one stable sort of the ``b k`` indices) and shared by the encoder's and the
    decoder's backward (``dW_enc^T = G^T u``, ``dW_dec = S^T g``), which before converted their
    own ``S^T`` each (a transpose of a CSR matrix is a sort). ``matrix(values)``: ``S^T`` holding
    ``values [b, k]``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.key: tuple[int, tuple[int, ...]] | None = None

    def matrix(self, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        key = (indices.data_ptr(), tuple(indices.shape))
        if key != self.key:  # the first backward of the step builds it
            flat = indices.reshape(-1)
            self.order = torch.argsort(flat, stable=True)
            counts = torch.bincount(flat, minlength=self.size)
            self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            self.col = torch.div(self.order, indices.shape[1], rounding_mode="floor")
            self.key = key
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are tested
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.crow, self.col, values.reshape(-1)[self.order], (self.size, indices.shape[0])
            )


class _TopKEncode(torch.autograd.Function):
    """TopK encoder with a backward over the selected entries (after EleutherAI's sparsify,
    ``sparsify/fused_encoder.py``; written anew here with sparse matrices). Forward, as
    :meth:`SparseAutoencoder.activate` for ``topk``: ``pre = u @ W_enc + b_enc`` (``u [b, width]``
    the input less ``b_dec``, ``pre [b, size]``), ``values = relu(topk(pre, k).values) [b, k]`` at
    ``indices [b, k]``.

    Backward: the gradient reaching ``pre`` through the codes is non-zero only at the ``b k``
    selected entries, so with ``G [b, size]`` that sparse gradient (relu's derivative applied)
    ``dW_enc = u^T G``, ``db_enc = sum_n G[n]`` and ``du = G W_enc^T``, products with a sparse
    matrix: ``O(b k width)`` instead of ``O(b size width)``. When ``pre`` itself receives a
    gradient (the AuxK loss reads it), the two are added into one dense gradient and the dense
    products are used."""

    @staticmethod
    def forward(
        ctx: Any,
        u: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        k: int,
        by_latent: Any = None,
        workspace: Any = None,
    ):
        ctx.by_latent = by_latent if by_latent is not None else _ByLatent(W_enc.shape[1])
        pre = torch.addmm(b_enc, u, W_enc, out=_buffer(workspace, u, W_enc.shape[1]))
        top = torch.topk(pre, k, dim=-1)
        indices, values = top.indices, torch.relu(top.values)
        ctx.save_for_backward(u, W_enc, indices, values)
        ctx.mark_non_differentiable(indices)
        ctx.set_materialize_grads(False)
        return values, indices, pre

    @staticmethod
    def backward(ctx: Any, g_values: torch.Tensor | None, _g_indices: Any, g_pre: torch.Tensor | None):
        u, W_enc, indices, values = ctx.saved_tensors
        need_u, need_w, need_b = ctx.needs_input_grad[:3]
        g = None if g_values is None else g_values * (values > 0)  # relu's derivative
        if g_pre is not None:  # dense: the AuxK loss's gradient covers other entries too
            G = g_pre if g is None else g_pre.scatter_add(-1, indices, g)
            dense = (G @ W_enc.T if need_u else None, u.T @ G if need_w else None, G.sum(0) if need_b else None)
            return (*dense, None, None, None)
        if g is None:
            return None, None, None, None, None, None
        size = W_enc.shape[1]
        g_u = torch.nn.functional.embedding_bag(indices, W_enc.T.contiguous(), per_sample_weights=g, mode="sum")
        g_w = (ctx.by_latent.matrix(indices, g) @ u).T if need_w else None
        g_b = (
            torch.zeros(size, dtype=g.dtype, device=g.device).index_add_(0, indices.reshape(-1), g.reshape(-1))
            if need_b
            else None
        )
        return g_u if need_u else None, g_w, g_b, None, None, None


class _SparseDecode(torch.autograd.Function):
    """``values [b, k]`` at latent ``indices [b, k]`` (distinct in each row) times the
    decoder ``W_dec [size, width]``: ``out[n] = sum_j values[n, j] W_dec[indices[n, j]]``, the
    dense codes' product with ``W_dec`` over their non-zero entries (an ``embedding_bag``, as
    sparsify decodes). Backward: ``d values[n, j] = <g[n], W_dec[indices[n, j]]>`` (a sampled
    product ``g W_dec^T`` at the selected entries) and ``dW_dec = S^T g`` with ``S`` the sparse
    codes: ``O(b k width)`` each."""

    @staticmethod
    def forward(
        ctx: Any, values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, by_latent: Any = None
    ) -> torch.Tensor:
        ctx.by_latent = by_latent if by_latent is not None else _ByLatent(W_dec.shape[0])
        ctx.save_for_backward(values, indices, W_dec)
        return torch.nn.functional.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        values, indices, W_dec = ctx.saved_tensors
        g_values = g_w = None
        if ctx.needs_input_grad[0]:
            pattern = _rows(indices, torch.zeros(indices.shape, dtype=g.dtype, device=g.device), W_dec.shape[0])
            sampled = torch.sparse.sampled_addmm(pattern, g, W_dec.T.contiguous(), beta=0.0)
            g_values = sampled.values().view(indices.shape)
        if ctx.needs_input_grad[2]:
            g_w = ctx.by_latent.matrix(indices, values) @ g
        return g_values, None, g_w, None


#: weight of the newest batch in batchtopk's running estimate of its inference threshold
THRESHOLD_RATE = 0.01


def _batch_topk(sae: SparseAutoencoder, pre: torch.Tensor) -> torch.Tensor:
    """BatchTopK (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders", arXiv:2412.06410):
    the ``k * b`` largest ReLU'd pre-activations of the whole batch ``[b, size]`` are kept, so a
    vector may use more or fewer than ``k`` latents while the batch averages ``k``. At inference
    there is no batch: a latent fires where its pre-activation exceeds one threshold ``theta``,
    estimated here as a running mean (rate :data:`THRESHOLD_RATE`, from the first batch's value)
    of the smallest positive activation each training batch kept, the paper's estimate."""
    acts = torch.relu(pre)
    flat = acts.flatten()
    top = torch.topk(flat, min(sae.config.k * len(pre), flat.numel()))
    codes = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
    with torch.no_grad():
        kept = top.values[top.values > 0]
        if len(kept):
            low = kept.min()
            first = not bool(sae.threshold > 0)
            sae.threshold.copy_(low if first else (1 - THRESHOLD_RATE) * sae.threshold + THRESHOLD_RATE * low)
    return codes


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    """The rectangle kernel ``K(u) = 1 if -1/2 < u < 1/2 else 0``."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with
    JumpReLU Sparse Autoencoders", arXiv:2407.14435): ``f(pre) = pre * H(pre - theta)`` with a
    positive threshold ``theta`` per latent. Its derivative in ``pre`` is ``H(pre - theta)``; in
    ``theta`` it is zero almost everywhere, so the paper's straight-through estimator uses the
    pseudo-derivative ``-(theta / eps) * K((pre - theta) / eps)`` with a kernel ``K`` of
    bandwidth ``eps`` (rectangle, as in the paper)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        pre, theta = ctx.saved_tensors
        g_pre = grad * (pre > theta)
        g_theta = (-(theta / ctx.eps) * _rectangle((pre - theta) / ctx.eps) * grad).sum(0)
        return g_pre, g_theta, None


class _Step(torch.autograd.Function):
    """``H(pre - theta)``, counted by JumpReLU's L0 penalty. The paper's straight-through
    estimator: no gradient to ``pre``, pseudo-derivative ``-(1 / eps) * K((pre - theta) / eps)``
    in ``theta`` (see :class:`_JumpReLU`)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        pre, theta = ctx.saved_tensors
        return None, (-(1.0 / ctx.eps) * _rectangle((pre - theta) / ctx.eps) * grad).sum(0), None


def _step(pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    return _Step.apply(pre, theta, eps)


#: the smallest JumpReLU threshold (normalised units): thresholds are stored as their logs
MIN_THRESHOLD = 1e-6
#: the share of training over which JumpReLU's L0 coefficient ramps up from 0 (steerlab's choice:
#: the paper ramps over a fixed number of steps of a far longer run)
L0_WARMUP = 0.1


def _adam_betas(config: SAEConfig) -> tuple[float, float]:
    """Adam's betas: the JumpReLU paper's (0, 0.999) for jumprelu, PyTorch's defaults otherwise."""
    return (0.0, 0.999) if config.architecture == "jumprelu" else (0.9, 0.999)


def _l0_coefficient(config: SAEConfig, step: int, n: int) -> float:
    """JumpReLU's L0 coefficient at ``step`` (of ``ceil(n / batch_size) * epochs`` for ``n``
    training vectors): ramped linearly from 0 to ``l0`` over the first :data:`L0_WARMUP` of
    training (the paper's sparsity-coefficient warm-up)."""
    ramp = L0_WARMUP * math.ceil(n / config.batch_size) * config.epochs
    return config.l0 * min(1.0, (step + 1) / ramp) if ramp > 0 else config.l0


def _save_log_threshold(module: torch.nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """State-dict hook: JumpReLU's thresholds are stored as ``log_threshold`` (the format's key)."""
    theta = state.pop(prefix + "jump_threshold")
    state[prefix + "log_threshold"] = theta.detach().log()


@torch.no_grad()
def snap_thresholds(sae: SparseAutoencoder) -> None:
    """Round JumpReLU's thresholds to values that survive storage as float32 logs exactly
    (``exp(log(theta)) == theta``), so a saved and loaded dictionary encodes bit for bit alike."""
    theta = sae.jump_threshold
    for _ in range(4):
        back = theta.log().exp()
        if torch.equal(back, theta):
            return
        theta.copy_(back)


def _load_log_threshold(state: dict[str, Any], prefix: str, *_args: Any) -> None:
    """Load pre-hook: ``log_threshold`` back to the thresholds trained directly."""
    if prefix + "log_threshold" in state:
        state[prefix + "jump_threshold"] = state.pop(prefix + "log_threshold").exp()


def _prefix_loss(sae: SparseAutoencoder, codes: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Matryoshka SAEs (Bussmann, Nabeshima, Karvonen & Nanda 2025, "Learning Multi-Level Features
    with Matryoshka Sparse Autoencoders", arXiv:2503.17547; Nabeshima 2024, "Matryoshka Sparse
    Autoencoders"): each nested prefix ``m`` of the dictionary (its first ``m`` latents, for every
    ``m`` of ``prefixes`` but the full size, whose term is the reconstruction loss itself) must
    reconstruct the input on its own, ``||z - codes[:, :m] @ W_dec[:m] - b_dec||^2``, and the
    losses are summed, so early latents learn general directions and later ones refine them.
    The codes are the full dictionary's TopK codes, truncated (the 2025 paper uses BatchTopK).
    Every term has weight 1, as in the references (dictionary_learning's trainer and Nabeshima's
    code average equally weighted terms: the same up to a factor, to which Adam is blind)."""
    total = torch.zeros((), dtype=z.dtype, device=z.device)
    for m in sae.config.effective_prefixes[:-1]:
        z_hat = codes[:, :m] @ sae.W_dec[:m] + sae.b_dec
        total = total + ((z_hat - z) ** 2).sum(-1).mean()
    return total


def _aux_loss(
    sae: SparseAutoencoder,
    pre: torch.Tensor,
    residual: torch.Tensor,
    dead: torch.Tensor,
    aux_k: int,
    sparse: bool = False,
) -> torch.Tensor:
    """AuxK: the top ``aux_k`` dead pre-activations of each vector must reconstruct the residual
    ``[b, width]`` left by the live code. Raw (un-ReLU'd) values are used so latents whose
    pre-activations went negative still get a gradient back towards the data. ``sparse``: decode
    the selected latents alone (:class:`_SparseDecode`), the same sum in another order."""
    k = min(aux_k, int(dead.sum()))
    masked = pre.masked_fill(~dead, float("-inf"))
    top = torch.topk(masked, k, dim=-1)
    if sparse:
        return ((_SparseDecode.apply(top.values, top.indices, sae.W_dec) - residual) ** 2).sum(-1).mean()
    aux_codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    return ((aux_codes @ sae.W_dec - residual) ** 2).sum(-1).mean()


def _may_resample(step: int, total_steps: int | None, epochs: int, until: float = 0.5) -> bool:
    """Resample only in the first ``until`` of training (half by default), so the final dead
    fraction measures the trained model. A stream's length is known after its first epoch;
    until then, the first epoch counts as early enough when there are at least two."""
    return step <= total_steps * until if total_steps is not None else epochs >= 2


#: the architectures whose rare latents are split off frequent ones (:func:`_split_rare`)
SPLIT_ARCHITECTURES = (*K_ARCHITECTURES, "jumprelu")
#: rare-latent splitting runs in the first 80% of training: the last 20% lets split pairs settle
SPLIT_UNTIL = 0.8
#: a latent is rare when it fired on fewer than this fraction of the average rate ``k / size``
RARE_FRACTION = 0.5


@torch.no_grad()
def _split_rare(
    sae: SparseAutoencoder, opt: torch.optim.Optimizer, rate: torch.Tensor, codes: torch.Tensor, residual: torch.Tensor
) -> int:
    """Pair each rare latent (``rate [size]`` below ``RARE_FRACTION * k / size``) with the most
    frequent latent not yet paired (rate above ``k / size``, firing on at least 2 vectors of this
    batch: ``codes [b, size]``, ``residual [b, width]`` in the normalised space) and split that
    latent's decoder row ``m`` along the top principal direction ``u`` of its residuals:
    ``normalise(m + u)`` goes to the rare latent, ``normalise(m - u)`` to the frequent one; both
    encoders become their decoder rows at the live latents' mean encoder norm, both take the
    frequent latent's bias, and their optimiser state is reset (Linde, Buzo & Gray 1980, codebook
    splitting). Returns how many rare latents were split off."""
    cfg = sae.config
    # jumprelu has no k: its own average firing rate stands in for k / size
    mean_rate = float(rate.mean()) if cfg.architecture == "jumprelu" else cfg.k / cfg.size
    rare = (rate < RARE_FRACTION * mean_rate).nonzero().squeeze(1).tolist()
    if not rare:
        return 0
    hits = (codes > 0).sum(0)
    frequent = [j for j in torch.argsort(rate, descending=True).tolist() if rate[j] > mean_rate and hits[j] >= 2]
    live = torch.ones(cfg.size, dtype=torch.bool, device=rate.device)
    live[rare] = False
    enc_norm = float(sae.W_enc[:, live].norm(dim=0).mean()) if bool(live.any()) else 1.0
    touched: list[int] = []
    for r, f in zip(rare, frequent):
        m = sae.W_dec[f].clone()
        u = torch.linalg.svd(residual[codes[:, f] > 0], full_matrices=False).Vh[0]
        u = u - (u @ m) * m  # the split happens in the plane of m and u
        if float(u.norm()) < 1e-6:
            continue
        u = u / u.norm()
        for j, sign in ((r, 1.0), (f, -1.0)):
            w = (m + sign * u) / math.sqrt(2.0)  # unit: m and u are orthonormal
            sae.W_dec[j] = w
            sae.W_enc[:, j] = w * enc_norm
            sae.b_enc[j] = sae.b_enc[f]
        touched += [r, f]
    if touched:
        idx = torch.tensor(touched, device=rate.device)
        for p, sl in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)), (sae.b_enc, (idx,))):
            state = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][sl] = 0.0
    return len(touched) // 2


@torch.no_grad()
def _resample(
    sae: SparseAutoencoder, opt: torch.optim.Optimizer, dead: torch.Tensor, residual: torch.Tensor, g: torch.Generator
) -> int:
    """Point dead latents at the residuals of poorly reconstructed inputs of this batch
    (drawn with probability proportional to squared error) and reset their optimiser state."""
    idx = dead.nonzero().squeeze(1)
    err = (residual**2).sum(-1)
    if float(err.sum()) <= 0:
        return 0
    # drawn on the CPU with the CPU generator: the same picks on every device (.cpu(): no copy on the CPU)
    picks = torch.multinomial(err.cpu(), len(idx), replacement=len(idx) > int((err > 0).sum()), generator=g)
    new = residual[picks.to(residual.device)]
    new = new / new.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    enc_norm = float(sae.W_enc[:, alive].norm(dim=0).mean()) if bool(alive.any()) else 1.0
    sae.W_dec[idx] = new
    sae.W_enc[:, idx] = new.T * (0.2 * enc_norm)
    sae.b_enc[idx] = 0.0
    for p, sl in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)), (sae.b_enc, (idx,))):
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][sl] = 0.0
    return len(idx)
