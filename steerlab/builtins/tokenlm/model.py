"""The token transformer as a steerable :class:`steerlab.model.AudioModel`.

``forward(wave)`` is the whole intervention flow of a sequence model: encode the
prompt clip to codec tokens, run the transformer on them, generate ``n_frames``
more frames by sampling, decode prompt and continuation through the codec (so
the decoder is warm when the continuation starts) and return the continuation
audio only. The transformer runs once per generated frame over the whole
sequence (no key/value cache), so a patched layer is patched on every call, at
the prompt positions every call recomputes (see ``docs/tokenlm.md``).

Sampling is reproducible per item: every batch row draws from its own generator
seeded with ``seed``, so a prompt gets the same random stream whether it runs
alone or in a batch, patched or not; a patch changes the continuation only
through the logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from steerlab.errors import SteerlabError
from steerlab.model import AudioModel, LayerInfo
from steerlab.registry import LayerRegistry

from .transformer import TokenTransformer

if TYPE_CHECKING:
    from steerlab.builtins.encodec.model import EncodecAudioModel

LAYER_KINDS = (
    ("resid_pre", "hook_resid_pre"),
    ("attn_out", "hook_attn_out"),
    ("mlp_out", "hook_mlp_out"),
    ("resid_post", "hook_resid_post"),
)


@dataclass(frozen=True)
class Sampling:
    """How the continuation is drawn: ``temperature`` 0 means greedy (argmax)."""

    n_frames: int = 75  # 1 s at the codec's 75 Hz
    temperature: float = 0.8
    top_k: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise SteerlabError(f"n_frames must be >= 1, got {self.n_frames}")
        if not self.temperature >= 0:
            raise SteerlabError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if self.top_k < 1:
            raise SteerlabError(f"top_k must be >= 1, got {self.top_k}")

    @classmethod
    def from_options(cls, base: Sampling, extra: dict[str, Any]) -> Sampling:
        """``base`` overridden by the loader's extra options (strings from a command line are converted)."""
        fields = {"n_frames": int, "temperature": float, "top_k": int, "seed": int}
        values = asdict(base)
        for key, value in extra.items():
            if key in fields:
                try:
                    values[key] = fields[key](value)
                except (TypeError, ValueError):
                    raise SteerlabError(
                        f"sampling option {key}={value!r} is not a valid {fields[key].__name__}"
                    ) from None
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "positions_patched": "prompt", "rng": "torch.Generator per batch row, seeded with seed"}


def sample_codes(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """One frame of codes from ``logits [batch, n_q, bins]`` and uniforms ``u [batch, n_q]``.

    Inverse-CDF sampling over the ``top_k`` most likely codes: the draw is a pure
    function of the logits and ``u``, so equal logits give equal codes.
    """
    if temperature == 0:
        return logits.argmax(-1)
    vals, idx = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
    cdf = torch.softmax(vals / temperature, dim=-1).cumsum(-1)
    j = (cdf < u[..., None] * cdf[..., -1:]).sum(-1).clamp(max=vals.shape[-1] - 1)
    return idx.gather(-1, j[..., None])[..., 0]


class TokenLMAudioModel(AudioModel):
    family = "tokenlm"
    paths = ("continuation",)
    default_path = "continuation"
    has_decoder = True
    causal = True
    # a right-padded prompt would be continued from its padding: batch equal lengths only
    ragged_batching = False

    def __init__(
        self,
        name: str,
        transformer: TokenTransformer,
        codec: EncodecAudioModel,
        sampling: Sampling,
        record: dict[str, Any],
    ) -> None:
        super().__init__()
        self.name = name
        self.transformer = transformer
        self.codec = codec
        self.sampling = sampling
        self.record = record  # provenance: codec hash trained on, training metrics
        self.sample_rate = codec.sample_rate
        self.channels = codec.channels
        self.hop = codec.hop
        self.config = {"transformer": transformer.cfg.to_json(), "codec": codec.name}
        # read-only hook point on the generated codes [batch, n_q, frames] (prompt + continuation)
        self.tokens = torch.nn.Identity()
        self.eval()

    @property
    def cfg(self):
        return self.transformer.cfg

    @property
    def n_q(self) -> int:  # type: ignore[override]  # read-only here; the core only reads it
        """Codebooks the transformer models (those of its codec it was trained on)."""
        return self.cfg.n_q

    def layer_calls(self, layer: LayerInfo) -> int:
        # the transformer runs once per generated frame; every layer is inside it
        return self.sampling.n_frames

    def output_length(self, n_samples: int) -> int:
        return self.sampling.n_frames * self.hop

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [batch, channels, samples]`` (whole frames) -> codes ``[batch, n_q, frames]``."""
        codec = self.codec
        z = codec.encoder(wave)
        return codec.quantizer.encode(z, codec.cfg.frame_rate, codec.bandwidth_for(self.cfg.n_q)).transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [batch, n_q, frames]`` -> audio ``[batch, channels, frames * hop]``."""
        return self.codec.decoder(self.codec.quantizer.decode(codes.transpose(0, 1)))

    def check_length(self, prompt_frames: int) -> None:
        total = prompt_frames + self.sampling.n_frames
        if total > self.cfg.max_frames:
            rate = self.sample_rate / self.hop
            raise SteerlabError(
                f"a prompt of {prompt_frames} frames ({prompt_frames / rate:.2f} s) plus a continuation of "
                f"{self.sampling.n_frames} frames exceeds {self.name}'s context of {self.cfg.max_frames} frames; "
                f"use a prompt of at most {(self.cfg.max_frames - self.sampling.n_frames) / rate:.2f} s or fewer n_frames"
            )

    def generate(self, codes: torch.Tensor) -> torch.Tensor:
        """Prompt ``codes [batch, n_q, P]`` -> ``[batch, n_q, P + n_frames]``."""
        s = self.sampling
        self.check_length(codes.shape[-1])
        # one generator per row, all seeded alike: a row's draws never depend on its batch
        u = torch.stack(
            [
                torch.rand(s.n_frames, self.cfg.n_q, generator=torch.Generator().manual_seed(s.seed))
                for _ in range(codes.shape[0])
            ]
        ).to(codes.device)
        seq = codes
        for step in range(s.n_frames):
            logits = self.transformer(seq)[:, -1]
            nxt = sample_codes(logits, u[:, step], s.temperature, s.top_k)
            seq = torch.cat([seq, nxt[..., None]], dim=-1)
        return seq

    def forward(self, wave: torch.Tensor, path: str = "continuation", n_q: int | None = None) -> torch.Tensor:
        """Prompt ``wave [batch, channels, samples]`` -> continuation ``[batch, channels, n_frames * hop]``."""
        self.check_path(path)
        if n_q is not None and n_q != self.cfg.n_q:
            raise SteerlabError(
                f"{self.name} models {self.cfg.n_q} codebooks; n_q {n_q} does not apply", parameter="n_q"
            )
        prompt = self.encode(wave)
        seq = self.tokens(self.generate(prompt))
        return self.decode(seq)[..., prompt.shape[-1] * self.hop :]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "sampling": self.sampling.to_json(),
            "codec": {
                "name": self.codec.name,
                "weights_sha256": self.codec_hash,
                "trained_on_weights_sha256": self.record.get("codec", {}).get("weights_sha256"),
            },
            "training": {k: self.record[k] for k in ("step", "validation", "baselines") if k in self.record},
        }

    @property
    def codec_hash(self) -> str:
        if not hasattr(self, "_codec_hash"):
            self._codec_hash = self.codec.weights_hash()
        return self._codec_hash


def register_tokenlm_layers(model: TokenLMAudioModel, registry: LayerRegistry) -> None:
    """Residual stream, attention and MLP outputs of every block, at the codec's frame rate."""
    cfg = model.cfg
    window_ms = 1000.0 * cfg.max_frames * model.hop / model.sample_rate
    context = (
        f"causal self-attention: a frame sees every earlier frame of the {cfg.max_frames}-frame window; "
        f"RF is that window ({window_ms:g} ms), not counting the codec's convolutions"
    )
    for i in range(cfg.n_layers):
        for kind, hook in LAYER_KINDS:
            registry.add(
                LayerInfo(
                    name=f"blocks.{i}.{kind}",
                    kind=kind,
                    module_path=f"transformer.blocks.{i}.{hook}",
                    channels=cfg.d_model,
                    stride=1,
                    hop=model.hop,
                    sample_rate=model.sample_rate,
                    # causal attention sees the whole context to the left
                    receptive_field=cfg.max_frames * model.hop,
                    recurrent=True,
                    side="transformer",
                    context=context,
                )
            )
    registry.alias("resid_post", f"blocks.{cfg.n_layers - 1}.resid_post")
