"""Speed of ``steerlab steerability``'s sweep, as a ratio measured in one run (no assertions).

Items per second of the battery's sweep of one concept (``steerlab.battery.runner._execute``: the
traced, patched, batched passes through the engine, the unpatched baselines they are scored
against, the concept's scoring, rows appended to ``results.jsonl`` with fsync) over a bare batched
forward of the same items: the same model, the same batches, the same model input (plain
``model(x, path=..., n_q=...)`` under ``torch.no_grad``: no hooks, no baselines, no scoring; ``x``
the batch the traced pass itself feeds the model, :func:`steerlab.tracing._batch`: each wave divided
by the model's ``input_scale`` and padded to whole frames, as every steerlab forward is). The items
are those of the ``--quick`` run's measured model (every layer, path, method, operation and
held-out pair; no controls). Goal (issue 15): ratio >= 0.85 (wall clock). The battery's passes share
equal inputs up to the edited layer (:func:`steerlab.tracing.run`'s ``share_inputs``: a batch's items
are edits of a few waves at one layer), which the bare loop does not; so the same ratio is also
printed with that sharing off, the cost of the battery's own work (baselines, edits, scoring, rows)
beside the forward. Interleaved repeats, best
of each. Also printed: the same ratio in CPU seconds (``time.process_time``, which other jobs on a
shared machine disturb far less than the wall clock) and each side's minor page faults per sweep
(``ru_minflt``, best repeat), the allocator's share of the cost (docs/steerability.md). The process
keeps its freed memory as the ``steerlab`` command's does (:func:`steerlab.memory.keep_freed_memory`,
before either side runs, so both sides run under it).

    OMP_NUM_THREADS=1 python benchmarks/bench_battery.py [-m MODEL] [-C CONCEPT ...] [--repeats R]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch


def ratio(concept_name: str, model_name: str | None, repeats: int) -> dict:
    from steerlab import tracing
    from steerlab.battery import runner
    from steerlab.battery.plan import work_items
    from steerlab.battery.registry import concepts
    from steerlab.partials import build
    from steerlab.partials.plan import batches

    concept = concepts().get(concept_name)
    cfg = build(None, quick=True).merged({"controls": {"positive_models": []}})
    plans, chash, _, dicts = runner.prepare(concept, cfg, model_name, True)
    vectors, prov, _ = runner._learn(plans, cfg, dicts, runner._NullBar)
    cp = plans[0]
    items = work_items(cp, cfg, chash, set(prov))
    model, mb = cp.model, cfg.run.max_batch
    context = {"weights": {model.name: model.weights_hash()}, "seed": cfg.run.seed}

    def ours() -> None:
        with tempfile.TemporaryDirectory() as d:
            store = runner.BatteryStore(Path(d), chash).open()
            runner._execute([(cp, items)], vectors, prov, store, context, mb, lambda n: None)

    def unshared() -> None:
        """The battery with every pass run on all its items' inputs (share_inputs off): what
        its own work costs beside the forward, without the saving of shared inputs."""
        from steerlab import engine

        run = engine.run
        engine.run = lambda *a, **k: run(*a, **{**k, "share_inputs": False})  # type: ignore[assignment]
        try:
            ours()
        finally:
            engine.run = run  # type: ignore[assignment]

    def model_input(batch: list) -> torch.Tensor:
        waves = [runner._wave(concept, model, it.pair, it.role) for it in batch]
        return tracing._batch(model, [w / model.input_scale(w) for w in waves], tracing._device(model))

    groups = [(b[0].path, b[0].n_q, model_input(b)) for b in batches(items, mb)]

    @torch.no_grad()
    def bare() -> None:
        for path, n_q, x in groups:
            model(x, path=path, n_q=n_q)

    (t_ours, c_ours, f_ours), (t_bare, c_bare, f_bare), (t_uns, c_uns, _) = timings([ours, bare, unshared], repeats)
    return {
        "concept": concept_name,
        "model": model.name,
        "items": len(items),
        "batches": len(groups),
        "ours_items_per_s": len(items) / t_ours,
        "bare_items_per_s": len(items) / t_bare,
        "ratio": t_bare / t_ours,
        "cpu_ratio": c_bare / c_ours,
        "unshared_ratio": t_bare / t_uns,
        "unshared_cpu_ratio": c_bare / c_uns,
        "faults": (f_ours, f_bare),
    }


def timings(fns: list, repeats: int) -> list[tuple[float, float, int]]:
    """Per function: its least wall time (s) and least CPU time (s) over ``repeats`` interleaved
    calls (as ``_common.best_of``), and the minor page faults of its least-CPU call."""
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[tuple[float, int]]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            f0, c0, w0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time(), time.perf_counter()
            fn()
            walls[i].append(time.perf_counter() - w0)
            cpus[i].append((time.process_time() - c0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0))
    return [(min(w), *min(c)) for w, c in zip(walls, cpus)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default=None, help="model (default: the embedded model)")
    parser.add_argument("-C", "--concept", action="append", help="concept(s) (default: every non-delegated one)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from steerlab.battery.registry import concepts
    from steerlab.memory import keep_freed_memory

    keep_freed_memory()  # as the steerlab command does before any sweep (both sides run in this process)

    names = args.concept or [c.name for c in concepts() if c.delegate is None]
    for name in names:
        r = ratio(name, args.model, args.repeats)
        print(
            f"{r['concept']:<14} {r['model']}: {r['items']} items in {r['batches']} batches; battery "
            f"{r['ours_items_per_s']:.1f} items/s, bare forward {r['bare_items_per_s']:.1f} items/s, "
            f"ratio {r['ratio']:.2f} (goal >= 0.85); CPU-time ratio {r['cpu_ratio']:.2f}; "
            f"minor page faults battery {r['faults'][0]}, bare {r['faults'][1]}; without shared inputs ratio "
            f"{r['unshared_ratio']:.2f}, CPU-time ratio {r['unshared_cpu_ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
