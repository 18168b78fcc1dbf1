"""The steerability battery (``steerlab steerability``, docs/steerability.md): the partials test's
question asked of every concept a plugin registers (``steerlab_register_concepts``).

Modules, in the order a run uses them: :mod:`~steerlab.battery.concept` (what a concept supplies:
pairs, oracle, scorer, rule, controls), :mod:`~steerlab.battery.check` (each rule on waveform
edits), :mod:`~steerlab.battery.plan` (work items), :mod:`~steerlab.battery.runner` (one concept's
resumable run on partials' machinery), :mod:`~steerlab.battery.verdicts` (verdicts with control,
null, oracle and validation) and :mod:`~steerlab.battery.run` (every concept, one summary).
Importing this package is cheap: torch and librosa load inside the functions that need them.
"""
