"""Throughput of the Ray executor (steerlab.executors) on a local 2-CPU cluster against the
in-process executor, and the figures of the scaling model in docs/distributed.md, measured in
one run (no assertions).

The work: the sweep of ``steerlab partials --quick``'s main model (both layers, both paths; the
first ``--items`` items), directions learned once beforehand, run by
:func:`steerlab.partials.sweep.execute` into a fresh results store each time (baselines,
batched patched passes, scores, rows appended with fsync by this process).

1. In process (``--executor local``) with 2 torch threads (what a 2-core machine gives one
   process) and with 1 (the per-batch cost of one worker).
2. On Ray (``--executor ray``, a local cluster of 2 CPUs, one torch thread per worker): cold
   (the workers load the model on their first batch) and warm. Goal (issue 16): warm
   throughput >= 0.8 x in process.
3. Scaling-model figures: the serial part in this process (baselines), the per-batch cost at
   one thread, the per-task overhead of Ray (a map of empty tasks returning a batch's rows), the
   per-batch write (append + fsync), the cluster's start-up time.

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py [--items N] [--repeats R]

``--battery`` measures the battery instead (``steerlab steerability --quick --executor ray``):
the sweeps of the chosen concepts (``--concepts``, default ``note,brightness``) on the quick
run's main model (both layers, both paths, every method; no positive control), directions
learned once beforehand, each run by :func:`steerlab.battery.runner._execute` into a fresh
results store: the unpatched decodes (one task per path under Ray, computed by the workers),
the batched patched passes, the concept's scores, the rows appended by this process. The same
four runs as above (in process with 2 and 1 threads, Ray cold and warm), the same goal, and the
scaling figures of the battery (its baselines' share, the per-batch cost, Ray's per-task cost).

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py --battery [--concepts note,brightness] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _setup(n_items: int):
    from steerlab.partials import build, runner
    from steerlab.partials.plan import work_items

    cfg = build(None, quick=True).merged({"controls": {"positive_models": []}})
    plans, dicts, context, h, _ = runner.prepare(cfg, quick=True)
    vectors, prov, _, refs = runner._learn_all(plans, cfg, dicts, runner._NullBar)
    plan = plans[0]
    items = work_items(plan, cfg, h, refs)
    return plan, (items[:n_items] if n_items else items), vectors, prov, context, h, cfg.run.max_batch


def _run(setup, executor, threads: int) -> tuple[float, int]:
    from steerlab.partials import sweep
    from steerlab.partials.store import ResultStore

    plan, items, vectors, prov, context, h, mb = setup
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as d:
            store = ResultStore(Path(d), h).open()
            t = time.perf_counter()
            n = sweep.execute(plan, items, vectors, prov, store, context, mb, set(), Path(d), None, executor)
            return time.perf_counter() - t, n
    finally:
        torch.set_num_threads(before)


def _rows_of(setup) -> list[list[dict]]:
    """Rows the size of a batch's, one list per batch (for the overhead and write figures)."""
    from steerlab.partials import sweep
    from steerlab.partials.plan import batches
    from steerlab.partials.store import ResultStore

    plan, items, vectors, prov, context, h, mb = setup
    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(Path(d), h).open()
        sweep.execute(plan, items[:mb], vectors, prov, store, context, mb, set(), Path(d))
        row = next(iter(store.rows.values()))
    return [[{**row, "key": f"{i}-{j}"} for j in range(len(b))] for i, b in enumerate(batches(items, mb))]


def _echo(shared: object, item: list) -> list:
    return item


def _battery_setup(names: list[str]):
    """Per concept: its plans (main model only), directions, items, context and store hash."""
    from steerlab.battery import runner
    from steerlab.battery.plan import work_items
    from steerlab.battery.registry import concepts
    from steerlab.partials import build

    cfg = build(None, quick=True).merged({"controls": {"positive_models": []}})
    out = []
    for name in names:
        plans, h, _, dicts = runner.prepare(concepts().get(name), cfg, None, True)
        vectors, prov, _ = runner._learn(plans, cfg, dicts, runner._NullBar)
        plan_items = [(cp, work_items(cp, cfg, h, set(prov))) for cp in plans]
        context = {"weights": {cp.model.name: cp.model.weights_hash() for cp in plans}, "seed": cfg.run.seed}
        out.append((plan_items, vectors, prov, context, h))
    return out, cfg.run.max_batch


def _battery_run(setup, executor, threads: int) -> tuple[float, int]:
    from steerlab.battery import runner

    concepts, mb = setup
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n, t = 0, time.perf_counter()
        for plan_items, vectors, prov, context, h in concepts:
            with tempfile.TemporaryDirectory() as d:
                store = runner.BatteryStore(Path(d), h).open()
                n += runner._execute(plan_items, vectors, prov, store, context, mb, lambda k: None, executor)
        return time.perf_counter() - t, n
    finally:
        torch.set_num_threads(before)


def _timings(
    run: Callable[[Any, Any, int], tuple[float, int]],
    setup: Any,
    repeats: int,
    payload: list[list[dict]],
    after_repeat: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The runs both modes time, in one place: a local 2-CPU Ray cluster started (``cluster_start_s``),
    ``run`` on it cold (``cold``, with the items it ran, ``n``), then ``repeats`` interleaved rounds
    (load spikes on a shared machine hit all alike) of in process with 2 threads and 1 and Ray warm
    (``local2``, ``local1``, ``warm``; ``after_repeat`` after each), and Ray's per-task cost on a
    map of empty tasks returning ``payload``'s batches of rows (``overhead``); the cluster is shut
    down after."""
    import ray

    from steerlab.executors import LocalExecutor, RayExecutor

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_start = time.perf_counter() - t
    ray_ex = RayExecutor()
    cold, n = run(setup, ray_ex, 1)
    local2, local1, warm = [], [], []
    for _ in range(repeats):
        local2.append(run(setup, LocalExecutor(), 2)[0])
        local1.append(run(setup, LocalExecutor(), 1)[0])
        warm.append(run(setup, ray_ex, 1)[0])
        after_repeat()
    t = time.perf_counter()
    for _ in ray_ex.map(_echo, None, payload):
        pass
    overhead = (time.perf_counter() - t) / len(payload)
    ray.shutdown()
    return {
        "cluster_start_s": t_start,
        "cold": cold,
        "n": n,
        "local2": local2,
        "local1": local1,
        "warm": warm,
        "overhead": overhead,
    }


def battery_main(names: list[str], repeats: int) -> None:
    import os

    from steerlab.battery import runner
    from steerlab.partials.plan import batches

    load = [os.getloadavg()]
    setup = _battery_setup(names)
    concepts, mb = setup
    items = [it for plan_items, *_ in concepts for _, its in plan_items for it in its]
    n_b = sum(len(batches(its, mb)) for plan_items, *_ in concepts for _, its in plan_items)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    t = time.perf_counter()
    for plan_items, *_ in concepts:
        for cp, its in plan_items:
            runner._baselines(cp, its, mb)
    t_base = time.perf_counter() - t
    torch.set_num_threads(before)

    payload = [[{"key": f"{i}-{j}", "target": 1.0} for j in range(mb)] for i in range(n_b)]
    m = _timings(_battery_run, setup, repeats, payload, lambda: load.append(os.getloadavg()))
    assert m["n"] == len(items)
    cold, local2, local1, warm, overhead, t_start = (
        m[k] for k in ("cold", "local2", "local1", "warm", "overhead", "cluster_start_s")
    )
    l2, l1, w = min(local2), min(local1), min(warm)
    out = {
        "concepts": names,
        "items": len(items),
        "batches": n_b,
        "max_batch": mb,
        "in_process_2_threads_s": l2,
        "in_process_1_thread_s": l1,
        "ray_2cpu_cold_s": cold,
        "ray_2cpu_warm_s": w,
        "all_runs_s": {"in_process_2_threads": local2, "in_process_1_thread": local1, "ray_warm": warm},
        "ratio_ray_warm_vs_in_process_2_threads": l2 / w,
        "ratio_ray_cold_vs_in_process_2_threads": l2 / cold,
        "ratio_ray_warm_vs_in_process_1_thread": l1 / w,
        "items_per_s": {
            "in_process_2_threads": len(items) / l2,
            "in_process_1_thread": len(items) / l1,
            "ray_warm": len(items) / w,
        },
        "model": {
            "baselines_1_thread_s": t_base,
            "per_batch_1_thread_s": (l1 - t_base) / n_b,
            "ray_task_overhead_s": overhead,
            "cluster_start_s": t_start,
            "first_use_s": cold - w,
        },
        "load_average_1_5_15": load,
    }
    print(json.dumps(out, indent=2))
    print(f"ratio (Ray warm, 2 CPUs / in process, 2 threads): {out['ratio_ray_warm_vs_in_process_2_threads']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=480)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--battery", action="store_true", help="measure the steerability battery's sweep instead")
    ap.add_argument("--concepts", default="note,brightness", help="with --battery: the concepts (comma-separated)")
    args = ap.parse_args()
    if args.battery:
        battery_main([c for c in args.concepts.split(",") if c], args.repeats)
        return

    from steerlab.partials.plan import batches
    from steerlab.partials.store import ResultStore
    from steerlab.partials.sweep import baselines

    setup = _setup(args.items)
    plan, items, *_, mb = setup
    n_b = len(batches(items, mb))

    t = time.perf_counter()
    baselines(plan, items, mb, items[0].n_q)
    t_base = time.perf_counter() - t

    payload = _rows_of(setup)
    m = _timings(_run, setup, args.repeats, payload)
    cold, overhead, t_start = m["cold"], m["overhead"], m["cluster_start_s"]
    l2, l1, w = min(m["local2"]), min(m["local1"]), min(m["warm"])
    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(Path(d), "x").open()
        t = time.perf_counter()
        for rows in payload:
            store.append([{**r, "config_hash": "x"} for r in rows])
        write = (time.perf_counter() - t) / len(payload)

    t_batch = (l1 - t_base) / n_b
    out = {
        "items": len(items),
        "batches": n_b,
        "max_batch": mb,
        "in_process_2_threads_s": l2,
        "in_process_1_thread_s": l1,
        "ray_2cpu_cold_s": cold,
        "ray_2cpu_warm_s": w,
        "ratio_ray_warm_vs_in_process_2_threads": l2 / w,
        "ratio_ray_cold_vs_in_process_2_threads": l2 / cold,
        "ratio_ray_warm_vs_in_process_1_thread": l1 / w,
        "items_per_s": {"in_process_2_threads": len(items) / l2, "ray_warm": len(items) / w},
        "model": {
            "serial_baselines_s": t_base,
            "per_batch_1_thread_s": t_batch,
            "per_item_1_thread_s": t_batch / (len(items) / n_b),
            "ray_task_overhead_s": overhead,
            "per_batch_write_s": write,
            "cluster_start_s": t_start,
            "first_batch_model_load_s": cold - w,
        },
    }
    print(json.dumps(out, indent=2))
    print(f"ratio (Ray warm, 2 CPUs / in process, 2 threads): {out['ratio_ray_warm_vs_in_process_2_threads']:.2f}")


if __name__ == "__main__":
    main()
