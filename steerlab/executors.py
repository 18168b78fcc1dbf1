"""Where independent work items run: in this process (``local``) or on a Ray cluster (``ray``).

An :class:`Executor` maps a pure, module-level function ``fn(shared, item)`` over serializable
work items and yields ``(index, result)`` pairs as the results arrive; it never writes
anything. The caller stays the one writer (a run's ``results.jsonl``, a sweep's folders), so a
run killed at any moment (``kill -9`` included) resumes exactly as an in-process run does, and
the rows do not depend on which executor computed them.

``local`` calls ``fn`` in order, in this process, with this process's torch threads (as every
command did before executors existed). ``ray`` (the optional extra ``pip install
"steerlab[ray]"``, `Ray <https://docs.ray.io>`_) submits one task per item and lets Ray schedule
them: ``shared`` is put once into Ray's object store, each task asks for one CPU, and each
worker process runs torch with ``threads`` threads (default 1: a worker is one CPU's worth of
work, and Ray starts one worker per CPU). State that is costly to build and the same for many
items (a loaded model) is kept per process with :func:`cached`: once per Ray worker, not per
item; the local executor shares the caller's cache, so nothing is loaded twice.

Bitwise identity: a result depends on the numbers of the pass that made it, and torch's CPU
kernels may sum in another order with another thread count; a Ray run gives the same rows as a
local run with the same thread count (``OMP_NUM_THREADS=1 steerlab ... --executor local``
against the default ``--executor ray``; docs/distributed.md). A caller whose own process
computes numbers the items read (a partials run's directions and unpatched decodes) runs that
part with the workers' thread count too (:func:`matching_threads`), so that every number of a
Ray run comes from kernels with one thread count, and the run equals a local run with that count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from steerlab.errors import ConfigError, SteerlabError

EXECUTORS = ("local", "ray")
RAY_HINT = 'the ray executor needs Ray: pip install "steerlab[ray]"'

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

_CACHE: dict[Hashable, Any] = {}


def cached(key: Hashable, make: Callable[[], Any]) -> Any:
    """The value of ``make()`` under ``key`` in this process, built on first use: in a Ray
    worker, once per worker process; locally, shared with the caller (see :func:`seed`)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def seed(key: Hashable, value: Any) -> None:
    """Put ``value`` under ``key`` in this process's cache (the caller's own loaded model, so
    the local executor does not load it again)."""
    _CACHE[key] = value


class Executor(Protocol):
    """Maps ``fn(shared, item)`` over ``items``; see the module docstring."""

    name: str
    threads: int | None  # torch threads of the workers; None: this process's own

    def map(self, fn: Callable[[S, T], R], shared: S, items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """``(index into items, fn(shared, items[index]))`` for every item, as each completes
        (in order locally, in completion order on Ray). An exception raised by ``fn`` is raised
        here (a :class:`~steerlab.errors.SteerlabError` as itself); pending items are cancelled
        when the iterator is closed early."""
        ...

    def describe(self) -> dict[str, Any]:
        """What a run records about where it ran (executor name, cluster resources, threads)."""
        ...

    def close(self) -> None:
        """Release what the executor started (a local Ray cluster it started itself)."""
        ...


class LocalExecutor:
    """In this process, in order, with this process's torch threads."""

    name = "local"
    threads: int | None = None

    def map(self, fn: Callable[[S, T], R], shared: S, items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            yield i, fn(shared, item)

    def describe(self) -> dict[str, Any]:
        import torch

        return {"executor": self.name, "torch_threads": torch.get_num_threads()}

    def close(self) -> None:
        return None


@contextmanager
def matching_threads(executor: Executor | None) -> Iterator[None]:
    """Within the block, this process's torch threads are the executor's workers' (unchanged
    for the local executor or None), and are restored after it."""
    threads = getattr(executor, "threads", None)
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SteerlabError(RAY_HINT, parameter="executor") from None
    return ray


_WORKER_THREADS: list[int] = []  # the torch threads this worker process was set to, once


def _in_worker(fn: Callable[[Any, Any], Any], threads: int, shared: Any, item: Any) -> Any:
    """The body of every Ray task: set this worker's torch threads and allocator (once,
    :func:`steerlab.memory.keep_freed_memory`), then ``fn``."""
    if _WORKER_THREADS != [threads]:
        import torch

        from steerlab.memory import keep_freed_memory

        keep_freed_memory()  # as the steerlab command does in its own process
        torch.set_num_threads(threads)
        _WORKER_THREADS[:] = [threads]
    return fn(shared, item)


class RayExecutor:
    """One Ray task per item (one CPU each), scheduled by Ray.

    ``address``: a running cluster (``auto`` for one started on this machine with ``ray start
    --head``, ``HOST:6379``, or ``ray://HOST:10001`` for Ray Client); None starts a local
    cluster with ``num_cpus`` CPUs (None: all of this machine's), whose workers import the same
    steerlab as this process. If Ray is already initialized in this process (a test, a
    notebook), that cluster is used and left running. ``threads``: torch threads per worker.
    Raises :class:`~steerlab.errors.SteerlabError` when Ray is not installed or nothing accepts a
    connection at ``address`` within :data:`CONNECT_TIMEOUT_S` seconds (``ray.init`` alone would
    wait without end), before anything is written, and
    :class:`~steerlab.errors.ConfigError` for ``threads`` < 1."""

    name = "ray"

    def __init__(self, address: str | None = None, threads: int = 1, num_cpus: int | None = None) -> None:
        if not (isinstance(threads, int) and threads >= 1):
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}", parameter="threads")
        ray = _import_ray()
        self.threads: int | None = threads
        self.address, self._owned = address, False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
                kwargs.update(num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}})
            else:
                _check_reachable(address)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = "start a local Ray cluster" if address is None else f"connect to Ray at {address!r}"
                raise SteerlabError(f"cannot {where}: {str(exc).splitlines()[0][:200]}", parameter="address") from None
            self._owned = True
        self._task = ray.remote(num_cpus=1)(_in_worker)

    def map(self, fn: Callable[[S, T], R], shared: S, items: Sequence[T]) -> Iterator[tuple[int, R]]:
        import ray

        if not items:
            return
        shared_ref = ray.put(shared)  # once; every task reads it from the object store
        pending = {self._task.remote(fn, self.threads, shared_ref, item): i for i, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield i, _result(ray, ref)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def describe(self) -> dict[str, Any]:
        import ray

        res = ray.cluster_resources()
        return {
            "executor": self.name,
            "address": self.address,
            "cluster_cpus": res.get("CPU"),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "torch_threads_per_worker": self.threads,
            "ray": ray.__version__,
        }

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False


CONNECT_TIMEOUT_S = 20.0  # how long an address may stay silent before it is refused


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto`` (Ray finds a
    cluster started on this machine itself, or says at once that there is none) or no port."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or address == "auto":
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse ``address`` in one line when nothing accepts a connection there within
    ``timeout_s`` seconds: ``ray.init`` would otherwise retry a silent address without end.
    Raises :class:`~steerlab.errors.SteerlabError` (``parameter="address"``)."""
    import socket

    where = _host_port(address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except OSError as exc:
        why = f"nothing answered within {timeout_s:g} s" if isinstance(exc, TimeoutError) else exc.strerror or exc
        raise SteerlabError(
            f"cannot connect to Ray at {address!r} ({why}); start a Ray cluster's head node there, "
            "correct the address, or leave the address out to start a local cluster",
            parameter="address",
        ) from None


def _result(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SteerlabError):
            raise cause from None
        raise


def make_executor(name: str, address: str | None = None, threads: int = 1) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`); ``address`` and ``threads``
    are the Ray executor's (an ``address`` with ``local`` is refused: it would be ignored).
    Raises :class:`~steerlab.errors.ConfigError` for an unknown name."""
    from steerlab import validation as check

    check.choice("executor", name, EXECUTORS)
    if name == "local":
        if address is not None:
            raise ConfigError(
                "an address needs executor ray (a Ray cluster to connect to); set executor ray or drop the address",
                parameter=("address", "executor"),
            )
        return LocalExecutor()
    return RayExecutor(address, threads)
