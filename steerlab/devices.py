"""Where steerlab computes: device resolution, CPU threads and the record of both.

Every command that runs a model or trains takes ``--device`` (``auto``, ``cpu``, ``cuda``,
``cuda:N``, ``mps``) and ``--threads N``; the Python API takes ``device=`` in
:func:`steerlab.load_model` and :func:`steerlab.sae.train_sae`, and every function that is
given a model (``intervene``, ``capture_activations``, ``learn_dictionary``) runs where that
model's weights are, or moves it to its own ``device=`` argument. :func:`resolve` turns a
request into a ``torch.device``: ``auto`` (or None) is CUDA when torch sees a CUDA device,
else the CPU, and is the only request that may fall back; an explicit ``cuda`` on a machine
without one is a :class:`~steerlab.errors.ConfigError` naming the device and what to do.

Everything is computed in float32 (docs/devices.md says why, step by step): no autocast, and
on CUDA TF32 is switched off for matmuls and cuDNN convolutions (:func:`use`), because
cuDNN's default TF32 convolutions keep 10 mantissa bits, a relative error near -60 dB, the
order of the spectral levels the partials verdicts read. :func:`record` is what each writer
stores under ``"compute"`` in its provenance (:func:`steerlab.provenance.record`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from steerlab.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: what ``--device`` accepts (``cuda:N`` for any N)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
#: the one precision steerlab computes in (see the module docstring and docs/devices.md)
PRECISION = "float32"
PRECISION_REASON = (
    "float32 everywhere, no autocast and no TF32: bf16/fp16 rounding (-48 dB / -66 dB relative) sits at "
    "the spectral levels the verdicts' dB thresholds read (docs/devices.md)"
)

_CUDA = re.compile(r"^cuda(:(\d+))?$")


def _cuda_count(torch: Any) -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve(device: Any = "auto") -> torch.device:
    """The ``torch.device`` a request names.

    ``device``: ``"auto"`` or None (CUDA device 0 when torch sees one, else the CPU), ``"cpu"``,
    ``"cuda"`` / ``"cuda:N"``, ``"mps"``, or a ``torch.device``. Raises
    :class:`~steerlab.errors.ConfigError` (``parameter="device"``) for another value and for a
    device this machine does not have (never a silent fallback to the CPU: only ``auto`` chooses).
    """
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda", 0) if _cuda_count(torch) else torch.device("cpu")
    if isinstance(device, torch.device):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise ConfigError(
            f"device must be one of {', '.join(DEVICE_CHOICES)} (a string or torch.device), "
            f"got {type(device).__name__} {device!r}",
            parameter="device",
        )
    if text == "cpu":
        return torch.device("cpu")
    cuda = _CUDA.match(text)
    if cuda:
        index = int(cuda.group(2) or 0)
        count = _cuda_count(torch)
        if count == 0:
            built = "torch was built without CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise ConfigError(
                f"device {text!r} is not available: {built}; use device 'cpu' (or 'auto', which falls back), "
                "or install a CUDA build of torch on a machine with an NVIDIA GPU",
                parameter="device",
            )
        if index >= count:
            raise ConfigError(
                f"device {text!r} is not available: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}",
                parameter="device",
            )
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps_available(torch):
            raise ConfigError(
                "device 'mps' is not available: torch sees no Apple Metal GPU; use device 'cpu' or 'auto'",
                parameter="device",
            )
        return torch.device("mps")
    raise ConfigError(
        f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}",
        parameter="device",
    )


def of(model: Any) -> torch.device:
    """Where ``model``'s weights live (its first parameter or buffer; the CPU when it has none)."""
    import itertools

    import torch

    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def use(device: torch.device) -> torch.device:
    """Prepare ``device`` for float32 work and return it: on CUDA, TF32 is switched off for
    matmuls and cuDNN convolutions (torch enables it for cuDNN by default). The CPU is left as
    it is (nothing there changes a result)."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def place(model: Any, device: Any) -> torch.device:
    """Move ``model`` to ``device`` (resolved by :func:`resolve`; None: leave it where it is) and
    return where it now is."""
    if device is None:
        return of(model)
    target = use(resolve(device))
    if of(model) != target:
        model.to(target)
    return target


def set_threads(threads: int | None) -> int:
    """``torch.set_num_threads(threads)`` (None: leave torch's own choice); returns the number of
    threads torch now uses. More threads than ``os.cpu_count()`` are accepted (torch allows
    oversubscription) with an :class:`~steerlab.errors.OversubscribedThreadsWarning` (the CLI
    prints it as one ``warning:`` line), and :func:`record` then stores the same sentence under
    ``threads_warning``. Raises :class:`ConfigError` (``parameter="threads"``) unless it is an
    integer >= 1 or None."""
    import warnings

    import torch

    from steerlab.errors import OversubscribedThreadsWarning
    from steerlab.validation import integer_or_none

    n = integer_or_none("threads", threads, low=1)
    if n is not None:
        torch.set_num_threads(n)
        said = oversubscribed(n)
        if said:
            warnings.warn(OversubscribedThreadsWarning(said), stacklevel=2)
    return torch.get_num_threads()


def oversubscribed(threads: int) -> str | None:
    """One sentence when ``threads`` exceeds the machine's CPU cores (``os.cpu_count()``), else None."""
    import os

    cores = os.cpu_count()
    if cores is None or threads <= cores:
        return None
    return (
        f"threads={threads} is more than the {cores} CPU core{'s' if cores != 1 else ''} of this machine "
        "(os.cpu_count()): torch runs "
        f"them oversubscribed, which is usually slower than {cores}"
    )


#: the attribute :func:`steerlab.load_model` sets on a model: the device it was asked for ("auto")
REQUEST_ATTR = "device_requested"


def record(device: Any = None, requested: Any = None) -> dict[str, Any]:
    """What a writer stores under ``provenance["compute"]``: ``device`` (``"cpu"``, ``"cuda:0"``),
    ``device_name`` (the GPU's name, or the CPU's), ``requested`` (what was asked for, e.g.
    ``"auto"``; None with ``requested_reason`` when nobody asked), ``dtype`` and ``autocast``
    (None, with ``autocast_reason``), ``tf32`` (CUDA only), ``torch_threads`` and, only when that exceeds the CPU cores,
    ``threads_warning`` (:func:`oversubscribed`). ``device``: a
    torch.device, a string, or a model (its weights' device, and the request
    :func:`steerlab.load_model` noted on it); None: the CPU, where torch makes tensors that are
    given no device."""
    import torch

    if device is not None and not isinstance(device, (str, torch.device)):
        requested = requested if requested is not None else getattr(device, REQUEST_ATTR, None)
        device = of(device)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        from steerlab.provenance import _cpu_model

        name = _cpu_model() if dev.type == "cpu" else dev.type
    out: dict[str, Any] = {
        "device": str(dev),
        "device_name": name,
        "requested": str(requested) if requested is not None else None,
        "dtype": PRECISION,
        "autocast": None,
        "autocast_reason": PRECISION_REASON,
        "torch_threads": torch.get_num_threads(),
    }
    crowded = oversubscribed(out["torch_threads"])
    if crowded:  # only then: records of a run within the cores keep their keys
        out["threads_warning"] = crowded
    if requested is None:
        out["requested_reason"] = (
            "no device was asked for: the computation ran where its model was loaded, or on the CPU"
        )
    if dev.type == "cuda":
        out["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
    return out
