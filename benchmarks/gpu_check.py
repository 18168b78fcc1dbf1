"""CPU-vs-GPU parity and GPU throughput, in one prepared run (docs/devices.md).

    python benchmarks/gpu_check.py --out "$OUT"            # on a machine with CUDA: both halves
    python benchmarks/gpu_check.py --out DIR --quick       # smaller sizes (the CPU test runs this)

The CPU half always runs: an intervention on the embedded codec (scores of a few synthetic
clips), a capture of its first conv and a short SAE training, each timed. With CUDA, the same
work runs on ``cuda:0`` and every output is compared with the CPU's within the tolerances in
:data:`TOLERANCE` (float32 on both, TF32 off: the differences are kernel rounding, not
precision), then throughput is measured on both devices (intervene items/s, SAE training
vectors/s). Writes ``gpu_check.json`` to ``--out``; without CUDA it says so, writes the CPU
half and exits 0. Takes well under 5 minutes on a GPU (about a minute on 2 CPU cores in full).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: parity tolerances, CPU against GPU (both float32)
TOLERANCE = {
    # decodes and activations: max |a - b| relative to the CPU output's peak
    "decode_rel": 1e-4,
    "capture_rel": 1e-4,
    # scores in dB (gain at the target, log-spectral distance): far below the verdicts' 6 dB thresholds
    "score_db": 0.05,
    # a short SAE training from the same initialisation and shuffle: rounding differences grow over
    # the steps, so the measured quality is compared, not the weights
    "sae_explained_variance": 0.02,
    "sae_final_loss_rel": 0.05,
}


def _clips(n: int, sr: int, seconds: float) -> list[np.ndarray]:
    from steerlab import synth

    return [synth.synthesize(s)[None, : int(sr * seconds)].astype(np.float32) for s in synth.corpus(n, 7, sr, seconds)]


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def half(device: str, quick: bool) -> dict[str, Any]:
    """The work on one device: outputs (for parity) and timings."""
    import torch

    import steerlab
    from steerlab import devices, provenance
    from steerlab.sae import SAEConfig, train_sae

    model = steerlab.load_model(device=device)
    layer = steerlab.layers(model).get("first_conv")
    sr = model.sample_rate
    clips = _clips(4 if quick else 16, sr, 1.0)
    spec = steerlab.InterventionSpec(
        layer=layer.name, direction=steerlab.channel_direction(3, layer), strength=steerlab.Strength(0.5)
    )
    steerlab.intervene(model, clips[:1], spec, target_hz=[440.0], device=device)  # warm-up (kernels, caches)
    _sync(device)
    t = time.perf_counter()
    results = steerlab.intervene(model, clips, spec, target_hz=[440.0], max_batch=16, device=device)
    _sync(device)
    intervene_s = time.perf_counter() - t
    acts = steerlab.capture_activations(model, clips, layer.name, device=device)
    vectors = np.concatenate([a.T for a in acts]).astype(np.float32)
    cfg = SAEConfig(width=layer.channels, size=64, k=8, epochs=2 if quick else 5, batch_size=256, seed=0)
    _, metrics = train_sae(torch.from_numpy(vectors), cfg, device=device)
    # SAE throughput on random data of a realistic size (one epoch after a warm-up epoch's worth)
    n, width, size = (8192, 32, 128) if quick else (245 * 4096, 128, 1024)
    data = torch.randn(n, width, generator=torch.Generator().manual_seed(0))
    big = SAEConfig(width=width, size=size, k=8, epochs=1, batch_size=4096, seed=0)
    _sync(device)
    t = time.perf_counter()
    _, big_metrics = train_sae(data, big, device=device)
    _sync(device)
    sae_s = time.perf_counter() - t
    return {
        "device": str(devices.resolve(device)),
        "compute": provenance.compute(model),
        "decodes": [r.patched for r in results],
        "baselines": [r.baseline for r in results],
        "scores": [r.scores["spectral"] for r in results],
        "capture": acts,
        "sae_metrics": metrics,
        "intervene_items_per_s": len(clips) / intervene_s,
        "intervene_items": len(clips),
        "sae_vectors_per_s": n / sae_s,
        "sae_throughput_setup": {"vectors": n, "width": width, "size": size, "k": 8, "batch": 4096},
        "sae_throughput_seconds_in_metrics": big_metrics["seconds"],
    }


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))


def _db_numbers(scores: dict[str, Any]) -> list[float]:
    out = [scores.get("lsd_db")] + [t.get("gain_db") for t in scores.get("targets", [])]
    return [float(x) for x in out if x is not None]


def parity(cpu: dict[str, Any], gpu: dict[str, Any]) -> dict[str, Any]:
    """Each compared quantity's worst difference, its tolerance and whether it is within."""
    decode = max(_rel(a, b) for a, b in zip(cpu["decodes"] + cpu["baselines"], gpu["decodes"] + gpu["baselines"]))
    capture = max(_rel(a, b) for a, b in zip(cpu["capture"], gpu["capture"]))
    score = max(
        abs(x - y) for a, b in zip(cpu["scores"], gpu["scores"]) for x, y in zip(_db_numbers(a), _db_numbers(b))
    )
    ev_c, ev_g = cpu["sae_metrics"]["explained_variance"], gpu["sae_metrics"]["explained_variance"]
    loss_c, loss_g = cpu["sae_metrics"]["final_loss"], gpu["sae_metrics"]["final_loss"]
    rows = {
        "decode_rel": decode,
        "capture_rel": capture,
        "score_db": score,
        "sae_explained_variance": abs(ev_c - ev_g),
        "sae_final_loss_rel": abs(loss_c - loss_g) / max(abs(loss_c), 1e-12),
    }
    return {k: {"measured": v, "tolerance": TOLERANCE[k], "ok": v <= TOLERANCE[k]} for k, v in rows.items()}


def _public(h: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "device",
        "compute",
        "sae_metrics",
        "intervene_items_per_s",
        "intervene_items",
        "sae_vectors_per_s",
        "sae_throughput_setup",
    )
    return {k: h[k] for k in keep}


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"), help="Folder for gpu_check.json.")
    parser.add_argument("--quick", action="store_true", help="Small sizes (seconds on a CPU).")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the CPU half.")
    args = parser.parse_args(argv)

    import torch

    from steerlab import devices

    devices.set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = half("cpu", args.quick)
    doc: dict[str, Any] = {"quick": args.quick, "tolerance": TOLERANCE, "cpu": _public(cpu)}
    if not torch.cuda.is_available():
        doc["cuda"] = False
        doc["message"] = "no CUDA device: ran the CPU half only (nothing to compare against)"
        (out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
        print(f"no CUDA device: ran the CPU half only; wrote {out / 'gpu_check.json'}")
        return 0
    gpu = half("cuda", args.quick)
    doc.update(cuda=True, gpu=_public(gpu), parity=parity(cpu, gpu))
    doc["speedup"] = {
        "intervene": gpu["intervene_items_per_s"] / cpu["intervene_items_per_s"],
        "sae_training": gpu["sae_vectors_per_s"] / cpu["sae_vectors_per_s"],
    }
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
    for name, row in doc["parity"].items():
        print(f"parity {name}: {row['measured']:.3g} (tolerance {row['tolerance']:g}) {'ok' if row['ok'] else 'FAIL'}")
    print(
        f"intervene: {gpu['intervene_items_per_s']:.1f} items/s on {gpu['compute']['device_name']} vs "
        f"{cpu['intervene_items_per_s']:.1f} on the CPU ({doc['speedup']['intervene']:.2f}x); SAE training "
        f"{gpu['sae_vectors_per_s']:.0f} vs {cpu['sae_vectors_per_s']:.0f} vectors/s ({doc['speedup']['sae_training']:.2f}x)"
    )
    print(f"wrote {out / 'gpu_check.json'}")
    return 0 if all(r["ok"] for r in doc["parity"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
