"""The sparse TopK training step computes what the dense one does (steerlab/sae.py, issue 16 §5).

Gradients of the sparse encoder and decoder equal the dense products' (gradcheck in float64 and a
direct comparison on unsorted top-k rows), a whole training run with the sparse step ends within
float32 round-off of the dense run, the sparse evaluation pass measures what the dense pass does,
and below the size threshold training is bit-for-bit what it was.
"""

from __future__ import annotations

import pytest
import torch

import steerlab.sae as S
from steerlab.errors import SAEDataError


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


def _dense_metrics(sae: S.SparseAutoencoder, x: torch.Tensor) -> dict:
    """The metrics as the dense pass measured them before (dense codes, float64 copies, SST summed
    again): the reference the top-k evaluation is held to."""
    with torch.no_grad():
        recon, codes = sae(x)
        xd = x.double()
        sse = float(((xd - recon.double()) ** 2).sum())
        d = xd - xd[0]
        s1 = d.sum(0)
        sst = float((d * d).sum()) - float((s1 * s1).sum()) / len(x)
        return {
            "explained_variance": 1.0 - sse / sst,
            "l0": float((codes > 0).sum()) / len(x),
            "dead_fraction": 1.0 - float((codes > 0).any(0).float().mean()),
        }


def test_topk_evaluation_equals_dense_evaluation():
    """The top-k evaluation (embedding_bag decode, float32 per vector, SST from the statistics pass)
    measures what the dense float64 pass does, at a sparse-step size and at the partials' dense
    128-latent k 8 size: explained_variance to float32 round-off (measured 1.5e-10 to 2.6e-10 at
    128x1024 and 32x128 on planted data), l0 and dead_fraction exactly."""
    for width, size, k, n in ((32, 256, 4, 5000), (16, 128, 8, 3000)):
        x = _planted(width, size, k, n)
        sae, metrics = S.train_sae(x, S.SAEConfig(width=width, size=size, k=k, epochs=2, batch_size=512))
        ref = _dense_metrics(sae, x)
        assert abs(metrics["explained_variance"] - ref["explained_variance"]) < 1e-6
        assert metrics["l0"] == ref["l0"] and metrics["dead_fraction"] == ref["dead_fraction"]
        assert metrics["n_vectors"] == n
        again = S.evaluate(sae, x)  # SST summed in this pass instead of taken from the statistics
        assert abs(again["explained_variance"] - metrics["explained_variance"]) < 1e-9
        assert again["l0"] == metrics["l0"] and again["dead_fraction"] == metrics["dead_fraction"]


def test_topk_evaluation_counts_dead_latents_and_zero_codes_exactly():
    """The top-k evaluation counts firings with an index_add over the selected latents (no boolean
    gather): l0 and dead_fraction equal the dense codes' counts when latents are dead and many
    selected codes are 0 (fewer than k positive in most rows)."""
    x = _planted(16, 128, 8, 9000)
    sae = S.SparseAutoencoder(S.SAEConfig(width=16, size=128, k=8))
    with torch.no_grad():
        sae.b_enc[:40] = -100.0  # dead
        sae.b_enc[40:] = -0.8  # often below 0: selected but 0
    metrics = S.evaluate(sae, x)
    codes = sae.encode(x)
    active = codes > 0
    assert 0 < metrics["l0"] < 8 and metrics["l0"] == float(active.sum()) / len(x)
    assert metrics["dead_fraction"] == 1.0 - float(active.any(0).float().mean()) >= 40 / 128


def test_statistics_pass_equals_the_reference_sums_bitwise():
    """The in-place statistics pass (no float64 temporaries, finiteness read off the sums) gives the
    very float64 sums of the straightforward one, and still rejects NaN and infinity, in any block."""
    x = _planted(12, 40, 3, 70_000) + 5.0  # two blocks of the array (65536 + 4464 rows), off-centre
    stats = S.data_stats(x, 12)
    n, s1, s2 = 0, torch.zeros(12, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)
    shift = x[0].double()
    for block in (x[:65_536], x[65_536:]):
        b = block.double()
        d = b - shift
        s1 += d.sum(0)
        s2 += (d * d).sum(0)
        n += len(b)
    mean = shift + s1 / n
    var = (s2 / n - (s1 / n) ** 2).clamp_min(0.0)
    assert torch.equal(stats.mean, mean)
    assert stats.std_norm == float(var.sum().sqrt()) and stats.mean_norm == float(mean.norm())
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[69_000, 5] = bad  # in the second block
        with pytest.raises(SAEDataError, match="NaN or infinite"):
            S.data_stats(y, 12)
        with pytest.raises(SAEDataError, match="NaN or infinite"):  # streamed, the first row of a block
            S.data_stats(lambda y=y: [y[:1000], y[69_000:]], 12)


def test_statistics_hash_on_its_thread_equals_hashing_the_whole_buffer():
    """The statistics pass hashes each block on a worker thread while it sums: the digest is
    hashlib's over the whole float32 buffer, for an array of several blocks and for uneven
    streamed blocks (an empty one among them), and a NaN still stops the pass."""
    import hashlib

    x = _planted(12, 40, 3, 140_000) - 2.0  # three blocks of the array (65536, 65536, 8928 rows)
    want = hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest()
    assert S.data_stats(x, 12).sha256 == want
    parts = [x[:7], x[7:7], x[7:90_001], x[90_001:]]
    streamed = S.data_stats(lambda: parts, 12)
    assert streamed.sha256 == want and streamed.n == 140_000
    y = x.clone()
    y[139_000, 0] = float("nan")
    with pytest.raises(SAEDataError, match="NaN or infinite"):
        S.data_stats(y, 12)


def test_statistics_hash_of_a_source_that_reuses_its_buffer():
    """A streamed source may refill one buffer for every block: the digest (hashed on a worker
    thread) is still hashlib's over the blocks' contents in order, because the hash of a block is
    awaited before the next is drawn."""
    import hashlib

    x = _planted(12, 40, 3, 200_000) - 2.0
    buf = torch.empty(50_000, 12)

    def refilled():
        for i in range(0, len(x), 50_000):
            buf.copy_(x[i : i + 50_000])
            yield buf

    want = hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest()
    assert S.data_stats(refilled, 12).sha256 == want


def test_reused_batch_buffer_yields_the_shuffled_rows():
    """The epoch's batches, gathered into one reused buffer, are the rows of the seeded permutation."""
    x = torch.randn(1000, 6)
    seen = [b.clone() for b in S._Source(x, 6).batches(300, torch.Generator().manual_seed(3))]
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(3))
    assert [len(b) for b in seen] == [300, 300, 300, 100]
    assert torch.equal(torch.cat(seen), x[perm])


def test_small_dictionaries_keep_the_dense_step():
    """Below SPARSE_TOPK_MIN_RATIO the step is the dense one: the partials goldens' 128-latent k 8
    dictionaries train bit for bit as before."""
    assert not S.uses_sparse_topk(S.SAEConfig(width=32, size=128, k=8))
    assert S.uses_sparse_topk(S.SAEConfig(width=128, size=1024, k=8))
    assert not S.uses_sparse_topk(S.SAEConfig(width=128, size=1024, k=8, architecture="relu"))


def test_dense_topk_selects_what_torch_topk_selects_bitwise():
    """The k-pass selection (_topk_mask, _DenseTopK) gives torch.topk's codes bit for bit, its
    gradient is the scatter's, and rows it cannot set apart by a threshold (a tie at the k-th value,
    NaN) fall back to torch.topk: checked on random rows, rows with ties, k 1 and k = size."""
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(3000, 128, generator=g)
    for k in (1, 3, 8, 16):
        mask = torch.empty_like(pre)
        assert S._topk_mask(pre, k, mask)
        assert torch.equal(mask.sum(-1), torch.full((3000,), float(k)))
        leaf = pre.clone().requires_grad_()
        codes, active = S._DenseTopK.apply(leaf, k)
        ref_leaf = pre.clone().requires_grad_()
        ref = S._topk_codes(ref_leaf, k)[0]
        assert torch.equal(codes, ref) and torch.equal(active, (ref > 0).float())
        w = torch.randn(3000, 128, generator=g)
        (codes * w).sum().backward()
        (ref * w).sum().backward()
        assert leaf.grad is not None and ref_leaf.grad is not None
        assert torch.equal(leaf.grad, ref_leaf.grad)
    tied = pre[:64].clone()
    tied[:, :10] = 1.0  # ten entries equal at the top: the 8 largest are not set apart
    tied[5, 3] = float("nan")
    assert not S._topk_mask(tied, 8, torch.empty_like(tied))
    codes, _ = S._DenseTopK.apply(tied, 8)
    ref = S._topk_codes(tied, 8)[0]  # torch.topk's own choice among the ties (and NaN as the largest)
    assert torch.allclose(codes, ref, rtol=0, atol=0, equal_nan=True) and bool(ref[5].isnan().any())
    small = torch.randn(50, 8, generator=g)
    assert torch.equal(S._DenseTopK.apply(small, 8)[0], small.relu())  # k = size: every entry


def test_dense_topk_training_equals_the_torch_topk_path_bitwise(monkeypatch):
    """A topk and a matryoshka run (AuxK and splits active) train to the same weights and metrics
    with the k-pass selection as with torch.topk (FAST_TOPK_MAX_K 0 forces the latter)."""
    x = _planted(16, 12, 3, 6000) - 1.0  # 12 directions for 64 latents: rare latents to split
    kw = dict(width=16, size=64, k=4, epochs=3, batch_size=512, dead_steps=5, split_every=4)
    for arch in ("topk", "matryoshka"):
        runs = []
        for fast in (S.FAST_TOPK_MAX_K, 0):
            monkeypatch.setattr(S, "FAST_TOPK_MAX_K", fast)
            sae, metrics = S.train_sae(x, S.SAEConfig(architecture=arch, **kw))
            metrics.pop("seconds")
            runs.append((sae.state_dict(), metrics))
        (a, ma), (b, mb) = runs
        assert ma == mb and ma["split"] > 0
        assert all(torch.equal(a[key], b[key]) for key in a)
