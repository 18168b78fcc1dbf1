"""Analyses of a learned dictionary (features or archetypes): post 1's measurements as code.

``steerlab analyze DICT --data ... -o REPORT`` runs them; from Python::

    from steerlab import api, dictionary
    from steerlab.analysis import AnalysisOptions, analyze, write_report
    from steerlab.capture import Corpus

    d = dictionary.load("dict_folder")
    model = api.load_model(d.model)
    corpus = Corpus.for_model(model, ["synth:16"])
    doc, figures = analyze(d, model, corpus, AnalysisOptions.quick_preset(), dictionary_path="dict_folder")
    write_report(doc, figures, "report_folder")

Modules: :mod:`~steerlab.analysis.geometry` (coverage, usage, reconstruction, redundancy,
stability), :mod:`~steerlab.analysis.dynamics` (locality, trajectories),
:mod:`~steerlab.analysis.spectra` (fragments and the narrowband measure),
:mod:`~steerlab.analysis.weights` (first-layer variants), :mod:`~steerlab.analysis.data`
(bounded captures), :mod:`~steerlab.analysis.pipeline` (the run),
:mod:`~steerlab.analysis.plots` and :mod:`~steerlab.analysis.report` (output),
:mod:`~steerlab.analysis.reference` (what post 1 reports).
"""

from steerlab.analysis.options import ANALYSES, AnalysisOptions
from steerlab.analysis.pipeline import analyze
from steerlab.analysis.report import write_report
from steerlab.errors import AnalysisError

__all__ = ["ANALYSES", "AnalysisError", "AnalysisOptions", "analyze", "write_report"]
