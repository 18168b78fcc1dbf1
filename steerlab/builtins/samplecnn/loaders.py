"""Loading SampleCNN weights: the shipped checkpoints, another run folder, or random init.

A weights folder is what ``steerlab train samplecnn`` exports: ``config.json``
(format ``steerlab-samplecnn`` version 1, the architecture, training record and
weights hash; for the instrument task also ``task``, its split) beside
``model.safetensors``. Two ship inside this package, so loading is offline:
``samplecnn_24khz`` (synthetic clip kinds) and ``samplecnn_instruments_24khz``
(General MIDI instrument families). A registered name only loads weights of its own
task, and an instrument task record must be the split its own fields imply.
"""

from __future__ import annotations

from pathlib import Path

import torch

from steerlab import schema
from steerlab.errors import ModelLoadError
from steerlab.model import LoadOptions

from .instruments import TASK as INSTRUMENTS
from .instruments import InstrumentTask
from .model import SampleCNN, SampleCNNConfig
from .train import FORMAT, VERSION

KINDS = "kinds"
SHIPPED_NAME = "samplecnn_24khz"
SHIPPED_DIR = Path(__file__).parent / "weights" / SHIPPED_NAME
DEFAULT_CONFIG = SampleCNNConfig()
INSTRUMENTS_NAME = "samplecnn_instruments_24khz"
INSTRUMENTS_DIR = Path(__file__).parent / "weights" / INSTRUMENTS_NAME
# the shipped instrument model's architecture (a test checks it against its config.json)
INSTRUMENTS_CONFIG = SampleCNNConfig(
    first_channels=16, block_channels=(16, 16, 32, 32, 64, 64), labels=InstrumentTask().families
)
TASK_OF = {SHIPPED_NAME: KINDS, INSTRUMENTS_NAME: INSTRUMENTS}


def _task(meta: dict, cfg: SampleCNNConfig, config_path: Path) -> InstrumentTask | None:
    """The instrument task a config.json records (None: no record, the synthetic clip kinds)."""
    record = meta.get("task")
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ModelLoadError(f"{config_path}: key 'task' must be an object")
    try:
        spec = InstrumentTask.from_json(record)
    except (KeyError, TypeError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        raise ModelLoadError(
            f"{config_path}: key 'task' is invalid: {text[0] if text else type(exc).__name__}"
        ) from None
    if spec.families != cfg.labels:
        raise ModelLoadError(
            f"{config_path}: the model's labels {list(cfg.labels)} are not the task's families {list(spec.families)}"
        )
    return spec


def load_artifact(folder: Path, name: str = SHIPPED_NAME, task: str | None = None) -> SampleCNN:
    """A SampleCNN saved by ``steerlab train samplecnn`` (a run folder or shipped weights).

    ``task`` (``"kinds"`` or ``"instruments"``), when given, must be the task the weights were
    trained on. Raises :class:`ModelLoadError` (one line) for a missing or malformed folder, an
    unknown format version, weights that do not fit the architecture, an instrument task record
    that is not the split its fields imply, labels that are not its families, or another task.
    """
    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise ModelLoadError(f"{folder} is not a steerlab SampleCNN folder (needs config.json and model.safetensors)")
    meta = schema.read_json(
        config_path, {"samplecnn": schema.mapping()}, ModelLoadError, format=FORMAT, versions=(VERSION,)
    )
    cfg = schema.build(
        SampleCNNConfig, meta["samplecnn"], config_path, "samplecnn", ModelLoadError, SampleCNNConfig.from_json
    )
    spec = _task(meta, cfg, config_path)
    trained_on = KINDS if spec is None else INSTRUMENTS
    if task is not None and trained_on != task:
        other = next(n for n, t in TASK_OF.items() if t == trained_on)
        raise ModelLoadError(
            f"{folder} holds a SampleCNN trained on the {trained_on} task; {name} is a model of the "
            f"{task} task (load it as {other})"
        )
    model = SampleCNN(name, cfg)
    try:
        model.load_state_dict(schema.read_tensors(weights, ModelLoadError))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise ModelLoadError(
            f"weights in {weights} do not fit the architecture in {config_path}: "
            f"{lines[1] if len(lines) > 1 else lines[0]}"[:300]
        ) from None
    model.training_record = meta
    model.instrument_task = spec
    return model.eval()


def random_samplecnn(name: str = SHIPPED_NAME, cfg: SampleCNNConfig = DEFAULT_CONFIG, seed: int = 0) -> SampleCNN:
    """The architecture at seeded random initialisation (baselines, layer tables)."""
    torch.manual_seed(seed)
    return SampleCNN(name, cfg).eval()


def _load(name: str, folder: Path, random_cfg: SampleCNNConfig, options: LoadOptions) -> SampleCNN:
    options.check_extra(name)
    if options.random_init:
        model = random_samplecnn(name, random_cfg)
        model.instrument_task = InstrumentTask() if TASK_OF[name] == INSTRUMENTS else None
        return model
    if options.checkpoint is not None:
        return load_artifact(Path(options.checkpoint), name, TASK_OF[name])
    if not (folder / "model.safetensors").is_file():
        raise ModelLoadError(f"shipped SampleCNN weights missing from the installation: {folder}; reinstall steerlab")
    return load_artifact(folder, name, TASK_OF[name])


def load_shipped(options: LoadOptions) -> SampleCNN:
    """``samplecnn_24khz``: the synthetic clip kinds."""
    return _load(SHIPPED_NAME, SHIPPED_DIR, DEFAULT_CONFIG, options)


def load_instruments(options: LoadOptions) -> SampleCNN:
    """``samplecnn_instruments_24khz``: General MIDI instrument families."""
    return _load(INSTRUMENTS_NAME, INSTRUMENTS_DIR, INSTRUMENTS_CONFIG, options)
