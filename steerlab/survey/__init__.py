"""``steerlab survey``: where do the variables live? Per model and layer, dictionary statistics,
effective dimensionality, narrowband measure, concept decodability, the battery's verdicts and
the architecture's prediction, every statistic beside its chance reference (docs/survey.md)."""

from steerlab.survey.config import FULL, QUICK, Settings, SurveyConfig
from steerlab.survey.report import write_report
from steerlab.survey.run import run_survey

__all__ = ["FULL", "QUICK", "Settings", "SurveyConfig", "run_survey", "write_report"]
