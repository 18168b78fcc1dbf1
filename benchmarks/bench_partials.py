"""Speed of ``steerlab partials``, as figures and ratios measured in one run (no assertions).

1. Wall and CPU time of ``steerlab partials --quick`` (a fresh run folder, the
   embedded model and the positive control). Goal (issue 4): under 60 s on two cores.
2. Items per second of the sweep (``steerlab.partials.sweep.execute``: the traced,
   patched, batched passes, the baselines they are scored against, scoring, rows
   appended with fsync) over a bare batched encode+decode of the same inputs in the
   same batches (plain ``model(x, path=...)`` under ``no_grad``, no hooks, no scoring).
   The items are those of the quick run's main model (both layers, both paths, 960).
   Goal: ratio >= 0.8. Interleaved repeats, best of each.

    OMP_NUM_THREADS=1 python benchmarks/bench_partials.py [--items N] [--repeats R] [--skip-cli]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def time_quick() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "steerlab", "partials", "--quick", "-o", str(Path(d) / "run")],
            check=True,
            capture_output=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def sweep_ratio(n_items: int, repeats: int) -> dict:
    from steerlab.partials import build, runner, sweep
    from steerlab.partials.plan import batches, work_items
    from steerlab.partials.store import ResultStore

    cfg = build(None, quick=True).merged({"controls": {"positive_models": []}})
    plans, dicts, context, h, _ = runner.prepare(cfg, quick=True)
    vectors, prov, _, refs = runner._learn_all(plans, cfg, dicts, runner._NullBar)
    plan = plans[0]
    items = work_items(plan, cfg, h, refs)
    items = items[:n_items] if n_items else items
    model, mb = plan.model, cfg.run.max_batch

    def ours():
        with tempfile.TemporaryDirectory() as d:
            sweep.execute(plan, items, vectors, prov, ResultStore(Path(d), h).open(), context, mb, set(), Path(d))

    groups = [
        (b[0].path, torch.stack([sweep._wave(model, it.stimulus, it.role) for it in b])) for b in batches(items, mb)
    ]

    @torch.no_grad()
    def bare():
        for path, x in groups:
            model(x, path=path)

    t_ours, t_bare = [], []
    for _ in range(repeats):
        for fn, acc in ((ours, t_ours), (bare, t_bare)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return {
        "items": len(items),
        "ours_s": min(t_ours),
        "bare_s": min(t_bare),
        "ours_items_per_s": len(items) / min(t_ours),
        "bare_items_per_s": len(items) / min(t_bare),
        "ratio": min(t_bare) / min(t_ours),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--items",
        type=int,
        default=0,
        help="the first N items of the quick plan; 0 (default): all of them, the workload of a "
        "real run (baselines are shared by both layers, so a one-layer slice overstates them)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_cli:
        wall, cpu = time_quick()
        print(f"steerlab partials --quick: wall {wall:.1f} s, cpu {cpu:.1f} s (goal: under 60 s)")
    r = sweep_ratio(args.items, args.repeats)
    print(
        f"sweep of {r['items']} items: {r['ours_items_per_s']:.1f} items/s vs bare batched encode+decode "
        f"{r['bare_items_per_s']:.1f} items/s: ratio {r['ratio']:.2f} (goal >= 0.8)"
    )


if __name__ == "__main__":
    main()
