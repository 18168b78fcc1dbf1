"""``steerlab survey --quick`` on the embedded model: wall time and per-stage times.

Prints the whole run's wall time (goal, issue 15: under 5 minutes on 2 cores; docs/survey.md) and
the seconds of each stage (load, probes, capture, dictionaries, dictionary statistics,
narrowband). No assertion on time: run it and compare.

    OMP_NUM_THREADS=1 python benchmarks/bench_survey.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    args = parser.parse_args()
    from steerlab.survey import SurveyConfig, run_survey, write_report

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "survey"
    t0 = time.perf_counter()
    doc, seconds = run_survey(SurveyConfig(quick=True))
    write_report(doc, out)
    wall = time.perf_counter() - t0
    print(f"survey --quick, embedded model: {wall:.1f} s wall ({len(doc['rows'])} layers), report in {out}")
    for stage, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<24} {s:7.1f} s")
    print(f"  {'(rest: import, report)':<24} {wall - sum(seconds.values()):7.1f} s")


if __name__ == "__main__":
    main()
