"""Each concept's verdict rule checked on waveform edits, before any model is measured.

A rule is usable when the ideal edit (the oracle: ``without -> with`` towards the change,
``with -> without`` back) passes it and wrong edits of the waveform (a level change, noise, the
wrong pitch, an added partial, ... each concept's :meth:`~steerlab.battery.concept.Concept.wrong_edits`)
fail it. The waveform is the perfect decode, so this is the ceiling of every verdict, and the
thresholds recorded in run.json are the ones checked here, on each stimulus variant with the
same rule and scorer (``instrument``: the concepts' rendered General MIDI pairs and rendered
wrong edits, :mod:`steerlab.builtins.concepts._rendered`):

    python -m steerlab.battery.check [CONCEPT ...]                      # synthetic pairs
    python -m steerlab.battery.check --stimuli instrument [CONCEPT ...]  # rendered-instrument pairs
    python -m steerlab.battery.check --stimuli both                     # one table per variant
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from steerlab.battery.concept import Concept

SAMPLE_RATE = 24_000
MARGIN_S = 0.1


def check(
    concept: Concept, seeds: Sequence[int] = range(5), quick: bool = True, variant: str = "synthetic"
) -> list[dict[str, Any]]:
    """One row per (seed, edit): ``edit`` (``oracle +`` towards "with", ``oracle -`` back, or a
    wrong edit's name, applied towards "with"), ``target``, ``damage``, ``passes``, and the
    pair's ``variant`` and GM ``program`` (None for synthetic pairs). Raises ConfigError for a
    ``variant`` the concept does not render in the battery."""
    from steerlab.battery.plan import concept_pairs

    rows = []
    for spec in concept_pairs(concept, SAMPLE_RATE, seeds, MARGIN_S, quick, variant):
        without, with_ = concept.render(spec)
        edits = {"oracle +": (without, with_, "with"), "oracle -": (with_, without, "without")}
        edits.update({name: (a, b, "with") for name, (a, b) in concept.wrong_edits(spec).items()})
        for name, (before, after, towards) in edits.items():
            s = concept.score(before, after, spec)
            rows.append(
                {
                    "concept": concept.name,
                    "variant": spec.variant,
                    "program": dict(spec.params).get("program"),
                    "seed": spec.seed,
                    "edit": name,
                    "target": s["target"],
                    "damage": s["damage"],
                    "passes": concept.rule.passes(s, towards),
                }
            )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Edit name -> (passing seeds, seeds)."""
    out: dict[str, list[int]] = {}
    for r in rows:
        cell = out.setdefault(r["edit"], [0, 0])
        cell[0] += bool(r["passes"])
        cell[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def usable(rows: list[dict[str, Any]], min_share: float) -> bool:
    """The oracle passes both ways on at least ``min_share`` of the seeds and every wrong edit
    passes on fewer than that."""
    s = summary(rows)
    ok = all(s[k][0] >= min_share * s[k][1] for k in ("oracle +", "oracle -"))
    return ok and all(p < min_share * n for k, (p, n) in s.items() if not k.startswith("oracle"))


def variants_for(concept: Concept, stimuli: str) -> list[str]:
    """The variants of ``stimuli`` (``synthetic``, ``instrument`` or ``both``) to check ``concept``
    on: exactly those the battery runs it on (:func:`steerlab.battery.run.variants_run`;
    ``partial`` keeps its own stimuli, and its instrument pairs are scored by ``steerlab
    partials``' note rule, docs/partials.md, so here its synthetic ones); empty where the battery
    refuses the concept under ``stimuli``."""
    from steerlab.battery.run import variants_run
    from steerlab.errors import ConfigError

    try:
        return list(variants_run(concept, stimuli))
    except ConfigError:
        return []


def _parser() -> Any:
    """The module's argument parser; a usage error exits with one line, ``Error: ... (see
    'python -m steerlab.battery.check -h')``, as the CLI words its own (not argparse's usage block)."""
    import argparse

    class OneLine(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            sys.exit(f"Error: {message} (see '{self.prog} -h')")

    parser = OneLine(prog="python -m steerlab.battery.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("concepts", nargs="*", help="concepts to check  [default: all that render the stimuli]")
    parser.add_argument("--stimuli", choices=("synthetic", "instrument", "both"), default="synthetic")
    return parser


def main(argv: Sequence[str] = ()) -> None:
    from steerlab.battery.plan import own_stimuli
    from steerlab.battery.registry import concepts
    from steerlab.battery.run import variants_run

    args = _parser().parse_args(list(argv))
    reg = concepts()
    names = list(args.concepts) or [n for n in reg.names() if variants_for(reg.get(n), args.stimuli)]
    for name in names:
        c = reg.get(name)
        if (note := own_stimuli(c, args.stimuli)) is not None:
            print(note)
        for variant in variants_run(c, args.stimuli):  # as the battery: refused where it refuses
            rows = check(c, variant=variant)
            programs = sorted({r["program"] for r in rows if r["program"] is not None})
            where = "" if not programs else f" [GM programs {', '.join(map(str, programs))}]"
            print(
                f"{name} ({variant}){where}: {c.rule.target} >= {c.rule.min_target:g}; {c.rule.damage} <= {c.rule.max_damage:g}"
            )
            for edit, (p, n) in summary(rows).items():
                med_t = sorted(
                    r["target"] if r["target"] is not None else float("nan") for r in rows if r["edit"] == edit
                )
                med_d = sorted(r["damage"] for r in rows if r["edit"] == edit)
                print(
                    f"  {edit:22s} passes {p}/{n}   target median {med_t[len(med_t) // 2]:8.2f}   damage median {med_d[len(med_d) // 2]:6.2f}"
                )
            print(f"  usable: {usable(rows, c.rule.min_share)}")


if __name__ == "__main__":
    from steerlab.errors import SteerlabError

    try:
        main(sys.argv[1:])
    except SteerlabError as exc:  # one line, as the CLI reports it
        sys.exit(f"Error: {exc}")
