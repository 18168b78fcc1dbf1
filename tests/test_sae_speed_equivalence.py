"""The sparse TopK training step computes what the dense one does (steerlab/sae.py, issue 16 §5).

Gradients of the sparse encoder and decoder equal the dense products' (gradcheck in float64 and a
direct comparison on unsorted top-k rows), a whole training run with the sparse step ends within
float32 round-off of the dense run, the sparse evaluation pass measures what the dense pass does,
and below the size threshold training is bit-for-bit what it was.
"""

from __future__ import annotations

import torch

import steerlab.sae as S


def _planted(width: int, size: int, k: int, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` vectors, each a non-negative combination of ``k`` of ``size`` random unit directions."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(size, width, generator=g), dim=1)
    idx = torch.randint(0, size, (n, k), generator=g)
    w = torch.rand(n, k, generator=g) * 1.5 + 0.5
    x = torch.nn.functional.embedding_bag(idx, d, per_sample_weights=w, mode="sum")
    return x + 0.01 * torch.randn(n, width, generator=g)


def test_sparse_decode_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(5, 3, dtype=torch.float64, generator=g).requires_grad_()
    indices = torch.stack([torch.randperm(11, generator=g)[:3] for _ in range(5)])  # unsorted rows
    W = torch.randn(11, 4, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, w: S._SparseDecode.apply(v, indices, w), (values, W))


def test_topk_encode_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(6, 4, dtype=torch.float64, generator=g).requires_grad_()
    W = torch.randn(4, 12, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(12, dtype=torch.float64, generator=g).requires_grad_()

    def values(u, W, b):  # the codes' path (sparse backward)
        return S._TopKEncode.apply(u, W, b, 3)[0]

    def with_pre(u, W, b):  # codes and pre both reach the loss (AuxK: the dense backward)
        v, _, pre = S._TopKEncode.apply(u, W, b, 3)
        return v.sum() + (pre**2).sum()

    assert torch.autograd.gradcheck(values, (u, W, b))
    assert torch.autograd.gradcheck(with_pre, (u, W, b))


def test_sparse_step_gradients_equal_dense_products():
    """One TopK loss, dense (codes @ W_dec, autograd) and sparse: same loss and gradients to float32
    round-off."""
    torch.manual_seed(0)
    sae = S.SparseAutoencoder(S.SAEConfig(width=16, size=96, k=4))
    z = torch.randn(64, 16)
    pre = sae.pre_activations(z)
    dense = ((sae.activate(pre) @ sae.W_dec + sae.b_dec - z) ** 2).sum(-1).mean()
    dense_grads = torch.autograd.grad(dense, [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])
    v, i, _ = S._TopKEncode.apply(z - sae.b_dec, sae.W_enc, sae.b_enc, 4)
    sparse = ((S._SparseDecode.apply(v, i, sae.W_dec) + sae.b_dec - z) ** 2).sum(-1).mean()
    sparse_grads = torch.autograd.grad(sparse, [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec])
    assert abs(float(dense) - float(sparse)) < 1e-5 * float(dense)
    for a, b in zip(dense_grads, sparse_grads):
        assert float((a - b).abs().max()) < 1e-5 * float(a.abs().max())


def _train(x: torch.Tensor, sparse: bool, **kw):
    saved = S.SPARSE_TOPK_MIN_RATIO
    S.SPARSE_TOPK_MIN_RATIO = 1 if sparse else 10**9
    try:
        return S.train_sae(x, S.SAEConfig(**kw))
    finally:
        S.SPARSE_TOPK_MIN_RATIO = saved


def test_training_sparse_matches_dense_within_round_off():
    """Whole runs with AuxK (dead_steps 5) and rare-latent splitting (split_every 10) active: the
    sparse step's weights stay within float32 round-off of the dense step's (measured max abs
    difference 1e-6 to 1e-5 against weights of order 1) and the metrics agree."""
    x = _planted(16, 24, 2, 2000)  # 24 true directions for 256 latents: many stay dead or rare
    kw = dict(width=16, size=256, k=2, epochs=2, batch_size=256, dead_steps=5, split_every=10)
    dense, m_dense = _train(x, False, **kw)
    sparse, m_sparse = _train(x, True, **kw)
    assert m_dense["split"] == m_sparse["split"] > 0
    assert m_dense["dead_fraction"] > 0  # AuxK ran on every step after the fifth
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        a, b = getattr(dense, name).detach(), getattr(sparse, name).detach()
        assert float((a - b).abs().max()) < 1e-3, name
    assert abs(m_dense["explained_variance"] - m_sparse["explained_variance"]) < 1e-4
    assert abs(m_dense["l0"] - m_sparse["l0"]) < 1e-3


def test_sparse_evaluation_equals_dense_evaluation():
    x = _planted(32, 256, 4, 5000)
    sae, metrics = S.train_sae(x, S.SAEConfig(width=32, size=256, k=4, epochs=2, batch_size=512))
    assert S.uses_sparse_topk(sae.config)
    saved = S.SPARSE_TOPK_MIN_RATIO
    S.SPARSE_TOPK_MIN_RATIO = 10**9
    try:
        dense = S.evaluate(sae, x)
    finally:
        S.SPARSE_TOPK_MIN_RATIO = saved
    assert abs(metrics["explained_variance"] - dense["explained_variance"]) < 1e-6
    assert metrics["l0"] == dense["l0"] and metrics["dead_fraction"] == dense["dead_fraction"]
    assert metrics["n_vectors"] == dense["n_vectors"] == 5000


def test_small_dictionaries_keep_the_dense_step():
    """Below SPARSE_TOPK_MIN_RATIO the step is the dense one: the partials goldens' 128-latent k 8
    dictionaries train bit for bit as before."""
    assert not S.uses_sparse_topk(S.SAEConfig(width=32, size=128, k=8))
    assert S.uses_sparse_topk(S.SAEConfig(width=128, size=1024, k=8))
    assert not S.uses_sparse_topk(S.SAEConfig(width=128, size=1024, k=8, architecture="relu"))
