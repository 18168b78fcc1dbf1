"""The partial-steerability batch test (``steerlab partials``; SCIENCE.md, issue 4).

Modules, in the order a run uses them: :mod:`~steerlab.partials.config` (what is
swept and judged), :mod:`~steerlab.partials.plan` (work items), :mod:`~steerlab.partials.directions`
(learned candidate directions and the null), :mod:`~steerlab.partials.sweep` (batched
patched passes and scores), :mod:`~steerlab.partials.store` (resumable results),
:mod:`~steerlab.partials.verdicts` and :mod:`~steerlab.partials.report`;
:mod:`~steerlab.partials.runner` ties them together. Importing this package is cheap:
torch, nnsight and scikit-learn load inside the functions that need them.
"""

from steerlab.errors import ConfigError, PlanError
from steerlab.partials.config import PartialsConfig, build
from steerlab.partials.plan import WorkItem

__all__ = ["ConfigError", "PartialsConfig", "PlanError", "WorkItem", "build", "run"]


def run(cfg: PartialsConfig, out_dir, quick: bool = False, dictionaries=(), **kwargs):
    """Run or resume the batch test into ``out_dir`` and write its report; returns
    ``(RunOutcome, {"verdicts", "controls", "agreement"})``."""
    from steerlab.partials.report import write_outputs
    from steerlab.partials.runner import run_partials

    outcome = run_partials(cfg, out_dir, quick, dictionaries, **kwargs)
    return outcome, write_outputs(outcome, cfg)
