"""Overhead of ``steerlab intervene`` over bare torch, as ratios measured in one run.

For each model and input length: the bare baseline is plain torch doing the same
work without steerlab or nnsight: one batched encode+decode of the inputs twice
over (baseline copies, then patched copies), with a plain forward hook adding the
direction to the patched half, which is exactly the pass steerlab traces. Against it we time
``api.run_pairs`` (the nnsight-traced, batched baseline+patched passes) and
``api.intervene`` (the same plus scoring). Also the wall time of ``steerlab --help``.
Goals (issue 2): traced/bare <= 1.10; ``--help`` under 0.5 s.

    python benchmarks/bench_intervene.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from _common import best_of  # benchmarks/ is on sys.path when run as a script


def bare(model, layer, waves, direction, alpha):
    node = model
    for part in layer.module_path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(w) for w in waves])
        x = torch.nn.functional.pad(x, (0, model.padded_length(x.shape[-1]) - x.shape[-1]))
        n = len(waves)

        def patch(module, inputs, out):
            out = out.clone()
            out[n:] += alpha * direction[None, :, None]
            return out

        h = node.register_forward_hook(patch)
        try:
            model(torch.cat([x, x]))
        finally:
            h.remove()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 s and 10 s only, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from steerlab import api, plugins
    from steerlab.builtins.encodec.codec import OFFICIAL_24KHZ
    from steerlab.builtins.encodec.loaders import random_codec
    from steerlab.interventions import Strength, channel_direction

    embedded = api.load_model()
    official = random_codec("encodec_24khz (random weights)", OFFICIAL_24KHZ)
    official.layer_registry = plugins.layers_for(official)
    cases = [(1.0, 1), (10.0, 1), (1.0, 16)] + ([] if args.quick else [(60.0, 1)])
    repeats = 3 if args.quick else 7
    print(f"{'model':<34}{'input':>12}{'bare s':>9}{'traced':>9}{'ratio':>7}{'+score':>9}{'ratio':>7}")
    for model in (embedded, official):
        layer = api.layers(model).get("encoder.6.conv")
        spec = api.InterventionSpec(
            layer=layer.name,
            direction=channel_direction(0, layer),
            intervention="add",
            strength=Strength(1.0, "absolute"),
        )
        d = spec.direction.unit()
        for seconds, batch in cases:
            rng = np.random.default_rng(0)
            waves = [
                (0.1 * rng.standard_normal((1, int(seconds * model.sample_rate)))).astype(np.float32)
                for _ in range(batch)
            ]
            t_bare, t_traced, t_full = best_of(
                [
                    # best_of calls these within this iteration: the loop variables are current
                    lambda: bare(model, layer, waves, d, 1.0),  # noqa: B023
                    lambda: api.run_pairs(model, waves, spec, 2 * batch),  # noqa: B023
                    lambda: api.intervene(model, waves, spec, (440.0,), max_batch=2 * batch),  # noqa: B023
                ],
                repeats,
            )
            label = f"{seconds:g} s x{batch}"
            print(
                f"{model.name:<34}{label:>12}{t_bare:>9.3f}{t_traced:>9.3f}{t_traced / t_bare:>7.2f}"
                f"{t_full:>9.3f}{t_full / t_bare:>7.2f}",
                flush=True,
            )
    helps = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "steerlab", "--help"], check=True, capture_output=True)
        helps.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_start = time.perf_counter() - t
    print(f"steerlab --help: median {statistics.median(helps):.3f} s (bare python start {python_start:.3f} s)")


if __name__ == "__main__":
    main()
