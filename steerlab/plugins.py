"""The plugin manager: built-ins first, then installed entry points, then a check.

Built-in plugins live in ``steerlab/builtins/`` as subpackages (``steerlab.builtins.encodec``, ...) and are loaded by
import path from :data:`DEFAULT_PLUGINS`, through exactly the hooks a third-party
plugin uses. Installed plugins come from the entry-point group ``steerlab``.
``STEERLAB_BLOCK_PLUGINS`` (comma-separated plugin names) keeps named plugins out.

A plugin that fails to import, or raises inside a registration hook, is recorded
in :data:`FAILURES` (shown by ``steerlab plugins``) and the rest keep working.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

from steerlab import hookspecs
from steerlab.errors import PluginError, SteerlabError
from steerlab.registry import InterventionRegistry, LayerRegistry, ModelRegistry, Registry, ScorerRegistry

DEFAULT_PLUGINS: tuple[str, ...] = (
    "steerlab.builtins.encodec",
    "steerlab.builtins.filterbank",
    "steerlab.builtins.stft",
    "steerlab.builtins.samplecnn",
    "steerlab.builtins.tokenlm",
    "steerlab.builtins.crepe",
    "steerlab.builtins.interventions",
    "steerlab.builtins.scorers",
)
ENTRY_POINT_GROUP = "steerlab"
BLOCK_ENV = "STEERLAB_BLOCK_PLUGINS"


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    stage: str
    error: str

    def line(self) -> str:
        return f"{self.plugin} ({self.stage}): {self.error}"


FAILURES: list[PluginFailure] = []
_pm: pluggy.PluginManager | None = None
_registries: dict[str, Registry] = {}


def _error_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def blocked() -> set[str]:
    return {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("steerlab")
    pm.add_hookspecs(hookspecs)
    for name in blocked():
        pm.set_blocked(name)
    for path in DEFAULT_PLUGINS:
        if pm.is_blocked(path):
            continue
        try:
            pm.register(importlib.import_module(path), name=path)
        except Exception as exc:  # a broken plugin must not take steerlab down
            FAILURES.append(PluginFailure(path, "import", _error_line(exc)))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            FAILURES.append(PluginFailure(ep.name, "import", _error_line(exc)))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        # a hook implementation with no matching spec (a misspelled hook): drop that plugin
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        pm.unregister(exc.plugin)
        FAILURES.append(PluginFailure(name, "check_pending", _error_line(exc)))
        pm.check_pending()
    _pm = pm
    return pm


def reset() -> None:
    """Forget the plugin manager and registries (tests, and after registering plugins)."""
    global _pm
    _pm = None
    _registries.clear()
    FAILURES.clear()


def call_each(hook_name: str, registry: Registry | None = None, **kwargs: Any) -> None:
    """Call ``hook_name`` on every plugin separately, recording which plugin added what.

    A plugin whose hook raises is recorded in :data:`FAILURES` and the others still run.
    """
    pm = get_plugin_manager()
    hook = getattr(pm.hook, hook_name)
    if registry is not None:
        kwargs["registry"] = registry
    # Registration order (built-ins first), not pluggy's LIFO call order: a newcomer that
    # reuses a built-in name is the one blamed, and the built-in's other entries survive.
    for impl in hook.get_hookimpls():
        if registry is not None:
            registry.current_plugin = impl.plugin_name
        try:
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception as exc:
            FAILURES.append(PluginFailure(impl.plugin_name, hook_name, _error_line(exc)))
    if registry is not None:
        registry.current_plugin = "<direct>"


def _registry(key: str, factory: Callable[[], Registry], hook_name: str) -> Registry:
    if key not in _registries:
        reg = factory()
        call_each(hook_name, reg)
        _registries[key] = reg
    return _registries[key]


def models() -> ModelRegistry:
    return _registry("models", ModelRegistry, "steerlab_register_models")  # type: ignore[return-value]


def interventions() -> InterventionRegistry:
    return _registry("interventions", InterventionRegistry, "steerlab_register_interventions")  # type: ignore[return-value]


def scorers() -> ScorerRegistry:
    return _registry("scorers", ScorerRegistry, "steerlab_register_scorers")  # type: ignore[return-value]


def layers_for(model: Any) -> LayerRegistry:
    """Ask every plugin for the layers of a loaded model."""
    reg = LayerRegistry(getattr(model, "name", ""))
    pm = get_plugin_manager()
    for impl in pm.hook.steerlab_register_layers.get_hookimpls():  # built-ins first: others may alias their layers
        reg.current_plugin = impl.plugin_name
        try:
            impl.function(**{k: v for k, v in {"model": model, "registry": reg}.items() if k in impl.argnames})
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed listing the layers of {model.name!r}: {_error_line(exc)}"
            ) from exc
    return reg


def guarded(plugin: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run plugin code during a run; turn a foreign exception into a one-line PluginError."""
    try:
        return fn(*args, **kwargs)
    except SteerlabError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {plugin!r} failed in {what}: {_error_line(exc)}") from exc


def summary() -> list[dict[str, Any]]:
    """Each plugin with what it registered (models, interventions, scorers, commands)."""
    pm = get_plugin_manager()
    regs = {"models": models(), "interventions": interventions(), "scorers": scorers()}
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # pluggy keeps a blocked name with no plugin
            rows.append({"name": name, "module": None, "builtin": name in DEFAULT_PLUGINS, "blocked": True,
                         "hooks": [], "models": [], "interventions": [], "scorers": [], "error": None})
            continue
        row: dict[str, Any] = {
            "name": name,
            "module": getattr(plugin, "__name__", repr(plugin)),
            "builtin": name in DEFAULT_PLUGINS,
            "blocked": False,
            "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
        }
        for key, reg in regs.items():
            row[key] = [n for n, owner in reg.owners.items() if owner == name]
        row["error"] = None
        rows.append(row)
    for failure in FAILURES:
        rows.append({"name": failure.plugin, "module": failure.plugin, "builtin": failure.plugin in DEFAULT_PLUGINS,
                     "blocked": False, "hooks": [], "models": [], "interventions": [], "scorers": [],
                     "error": f"{failure.stage}: {failure.error}"})
    return rows
