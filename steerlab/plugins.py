"""The plugin system: one :class:`PluginHost` holds the pluggy manager, the registries the
hooks fill and the failures met on the way.

A host loads built-ins first (``steerlab.builtins.<name>``, by import path from
:data:`DEFAULT_PLUGINS`, through exactly the hooks a third-party plugin uses), then the
installed entry points of the group ``steerlab``, then runs ``check_pending()`` so a
misspelled hook fails at start-up. ``STEERLAB_BLOCK_PLUGINS`` (comma-separated plugin names)
keeps named plugins out, except the :data:`ESSENTIAL_PLUGINS` the core's defaults need; a name
that is neither a built-in nor an installed plugin is refused (a misspelling would block nothing).

Every hook implementation is called through pluggy, one plugin at a time (so
``pm.add_hookcall_monitoring`` sees each call, and one plugin's exception cannot stop the
others), and what happens when it raises is :data:`FAILURE_POLICY`'s entry for the hook.

The module-level functions (:func:`models`, :func:`interventions`, :func:`scorers`,
:func:`layers_for`, :func:`summary`, ...) act on a default host built on first use;
:func:`reset` drops it so the next call builds a fresh one.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar, cast

import pluggy

from steerlab import hookspecs
from steerlab.errors import PluginError, SteerlabError
from steerlab.registry import InterventionRegistry, LayerRegistry, ModelRegistry, Registry, ScorerRegistry

DEFAULT_PLUGINS: tuple[str, ...] = (
    "steerlab.builtins.encodec",
    "steerlab.builtins.filterbank",
    "steerlab.builtins.stft",
    "steerlab.builtins.logspec",
    "steerlab.builtins.samplecnn",
    "steerlab.builtins.tokenlm",
    "steerlab.builtins.crepe",
    "steerlab.builtins.interventions",
    "steerlab.builtins.scorers",
    "steerlab.builtins.concepts",
)
# Built-ins that STEERLAB_BLOCK_PLUGINS may not name, because the core's defaults need them:
# ``interventions`` supplies ``add`` (the default intervention type, and the one every partials
# sweep runs), ``scorers`` supplies ``spectral`` (scored on every decode), ``encodec`` supplies the
# default model (every command run without --model, ``load_model()``, its shipped dictionaries).
# Blocking one would break those defaults far from the cause; the other built-ins only add models.
ESSENTIAL_PLUGINS: tuple[str, ...] = (
    "steerlab.builtins.encodec",
    "steerlab.builtins.interventions",
    "steerlab.builtins.scorers",
)
ENTRY_POINT_GROUP = "steerlab"
BLOCK_ENV = "STEERLAB_BLOCK_PLUGINS"

R = TypeVar("R", bound=Registry[Any])
Policy = Literal["record", "raise"]
# What happens when a hook implementation raises (any Exception, a DuplicateNameError included):
# - "record": the hooks called once per process to fill a registry or the command line. The
#   failure is kept in ``PluginHost.failures`` (shown by ``steerlab plugins``), what the plugin
#   added before raising stays, and the other plugins are still called: one broken plugin must
#   not take steerlab down.
# - "raise": the hooks called for one loaded model inside a user's command. The first failure
#   becomes a one-line PluginError naming the plugin: a layer table missing one plugin's layers
#   would be silently wrong.
FAILURE_POLICY: dict[str, Policy] = {
    "steerlab_register_models": "record",
    "steerlab_register_interventions": "record",
    "steerlab_register_scorers": "record",
    "steerlab_register_concepts": "record",
    "steerlab_register_commands": "record",
    "steerlab_register_layers": "raise",
}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed at ``stage`` (``import``, ``check_pending`` or a hook's name)."""

    plugin: str
    stage: str
    error: str

    def line(self) -> str:
        return f"{self.plugin} ({self.stage}): {self.error}"


def _error_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def blocked() -> set[str]:
    """The plugin names ``STEERLAB_BLOCK_PLUGINS`` lists (blanks and spaces dropped)."""
    return {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()}


def _essential_refusal(names: Sequence[str], builtins: Sequence[str], essential: Sequence[str]) -> PluginError:
    listed = ", ".join(map(repr, names))
    blockable = ", ".join(name for name in builtins if name not in essential) or "(none)"
    return PluginError(
        f"cannot block {listed} ({BLOCK_ENV}): an essential built-in plugin that steerlab's defaults need "
        f"(the default model, the 'add' intervention, the 'spectral' scorer); built-ins that can be blocked: {blockable}"
    )


def _unknown_refusal(
    names: Sequence[str], builtins: Sequence[str], essential: Sequence[str], installed: Sequence[str]
) -> PluginError:
    from steerlab.validation import did_you_mean

    blockable = [name for name in builtins if name not in essential] + [n for n in installed if n not in builtins]
    listed = ", ".join(map(repr, names))
    hint = did_you_mean(names[0], blockable) if len(names) == 1 else ""
    return PluginError(
        f"unknown plugin{'s' if len(names) > 1 else ''} {listed} in {BLOCK_ENV}.{hint} "
        f"Plugins that can be blocked: {', '.join(blockable)}"
    )


class PluginHost:
    """One plugin system: the pluggy manager, the registries its hooks fill, its failures.

    ``builtins``: module paths registered first, in order. ``blocked``: plugin names kept out
    (None: read ``STEERLAB_BLOCK_PLUGINS`` when the manager is built); naming one of
    ``essential``, or a name that is neither a built-in nor an installed entry point, raises
    :class:`PluginError` when it is built. ``entry_point_group``: the
    group installed plugins are found in (None: none are). Nothing happens until the manager
    or a registry is first asked for; two hosts share no state.
    """

    def __init__(
        self,
        builtins: Sequence[str] = DEFAULT_PLUGINS,
        blocked: Iterable[str] | None = None,
        essential: Sequence[str] = ESSENTIAL_PLUGINS,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        self.builtins = tuple(builtins)
        self.essential = tuple(essential)
        self.entry_point_group = entry_point_group
        self._blocked = None if blocked is None else frozenset(blocked)
        self.failures: list[PluginFailure] = []
        self._pm: pluggy.PluginManager | None = None
        self._registries: dict[str, Registry[Any]] = {}

    # -- loading -----------------------------------------------------------------------------------

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy manager, loaded on first use. Raises :class:`PluginError` when an essential
        built-in, or an unknown name, is blocked."""
        if self._pm is None:
            self._pm = self._load()
        return self._pm

    def blocked_names(self) -> frozenset[str]:
        return frozenset(blocked()) if self._blocked is None else self._blocked

    def _load(self) -> pluggy.PluginManager:
        names = self.blocked_names()
        refused = [name for name in self.essential if name in names]
        if refused:
            raise _essential_refusal(refused, self.builtins, self.essential)
        installed = list(entry_points(group=self.entry_point_group)) if self.entry_point_group is not None else []
        unknown = sorted(set(names) - set(self.builtins) - {ep.name for ep in installed})
        if unknown:  # a misspelled name would block nothing, silently
            raise _unknown_refusal(unknown, self.builtins, self.essential, [ep.name for ep in installed])
        pm = pluggy.PluginManager("steerlab")
        pm.add_hookspecs(hookspecs)
        for name in sorted(names):
            pm.set_blocked(name)
        for path in self.builtins:
            if not pm.is_blocked(path):
                self._register_loaded(pm, path, functools.partial(importlib.import_module, path))
        if self.entry_point_group is not None:
            for ep in installed:  # the module's name: tests fake it
                if not (pm.is_blocked(ep.name) or pm.has_plugin(ep.name)):
                    self._register_loaded(pm, ep.name, ep.load)
        self._check_pending(pm)
        return pm

    def _register_loaded(self, pm: pluggy.PluginManager, name: str, load: Callable[[], object]) -> None:
        try:
            pm.register(load(), name=name)
        except Exception as exc:  # a plugin that fails to import must not take steerlab down
            self.failures.append(PluginFailure(name, "import", _error_line(exc)))

    def _check_pending(self, pm: pluggy.PluginManager) -> None:
        """Drop (and record) each plugin with a hook implementation that matches no hook: a
        misspelled hook would otherwise never be called, silently."""
        while True:
            try:
                pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = pm.get_name(exc.plugin) or repr(exc.plugin)
                pm.unregister(exc.plugin)
                self.failures.append(PluginFailure(name, "check_pending", _error_line(exc)))

    def register(self, plugin: object, name: str | None = None) -> None:
        """Add ``plugin`` to a loaded host (tests, notebooks), checked as at start-up; the
        registries are rebuilt on their next use so they ask it too."""
        self.pm.register(plugin, name=name)
        self._check_pending(self.pm)
        self.clear_registries()

    def unregister(self, plugin: object) -> None:
        """Remove ``plugin``; the registries are rebuilt without it on their next use."""
        self.pm.unregister(plugin)
        self.clear_registries()

    def clear_registries(self) -> None:
        self._registries.clear()

    # -- calling hooks -----------------------------------------------------------------------------

    def call_each(
        self, hook_name: str, registry: Registry[Any] | None = None, *, what: str | None = None, **kwargs: Any
    ) -> None:
        """Call ``hook_name`` on every plugin, one at a time, through pluggy, with ``kwargs`` (and
        ``registry``, which records the calling plugin as the owner of what it adds).

        Plugins are called in registration order (built-ins first), not pluggy's last-in-first-out
        order: a newcomer that reuses a built-in's name is the one blamed, and a plugin may extend a
        built-in's layer table. A failure follows :data:`FAILURE_POLICY`; ``what`` words the
        PluginError of the "raise" policy (default: ``in <hook_name>``).
        """
        pm = self.pm
        policy = FAILURE_POLICY[hook_name]
        if registry is not None:
            kwargs["registry"] = registry
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        for impl in impls:
            if registry is not None:
                registry.current_plugin = impl.plugin_name
            # a caller over this one implementation: isolated, yet seen by hook-call monitoring
            only = pm.subset_hook_caller(
                hook_name, remove_plugins=[other.plugin for other in impls if other is not impl]
            )
            try:
                only(**kwargs)
            except Exception as exc:
                if policy == "raise":
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed {what or 'in ' + hook_name}: {_error_line(exc)}"
                    ) from exc
                self.failures.append(PluginFailure(impl.plugin_name, hook_name, _error_line(exc)))
        if registry is not None:
            registry.current_plugin = "<direct>"

    def _registry(self, key: str, factory: Callable[[], R], hook_name: str) -> R:
        if key not in self._registries:
            reg = factory()
            self.call_each(hook_name, reg)
            self._registries[key] = reg
        return cast(R, self._registries[key])

    def models(self) -> ModelRegistry:
        return self._registry("models", ModelRegistry, "steerlab_register_models")

    def interventions(self) -> InterventionRegistry:
        return self._registry("interventions", InterventionRegistry, "steerlab_register_interventions")

    def scorers(self) -> ScorerRegistry:
        return self._registry("scorers", ScorerRegistry, "steerlab_register_scorers")

    def concepts(self) -> Any:
        """The concepts of ``steerlab steerability`` (a :class:`steerlab.battery.concept.ConceptRegistry`)."""
        from steerlab.battery.concept import ConceptRegistry

        return self._registry("concepts", ConceptRegistry, "steerlab_register_concepts")

    def layers_for(self, model: Any) -> LayerRegistry:
        """Ask every plugin for the layers of a loaded model (never cached: models differ)."""
        name = getattr(model, "name", "")
        reg = LayerRegistry(name)
        self.call_each("steerlab_register_layers", reg, what=f"listing the layers of {name!r}", model=model)
        return reg

    # -- reporting ---------------------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        """Each plugin with what it registered (models, interventions, scorers, concepts), blocked ones
        and failed ones with their error."""
        pm = self.pm
        regs: dict[str, Registry[Any]] = {
            "models": self.models(),
            "interventions": self.interventions(),
            "scorers": self.scorers(),
            "concepts": self.concepts(),
        }
        empty: dict[str, list[str]] = {"hooks": [], "models": [], "interventions": [], "scorers": [], "concepts": []}
        rows = []
        for name, plugin in pm.list_name_plugin():
            if plugin is None:  # pluggy keeps a blocked name with no plugin
                rows.append(
                    {
                        "name": name,
                        "module": None,
                        "builtin": name in self.builtins,
                        "blocked": True,
                        **empty,
                        "error": None,
                    }
                )
                continue
            row: dict[str, Any] = {
                "name": name,
                "module": getattr(plugin, "__name__", repr(plugin)),
                "builtin": name in self.builtins,
                "blocked": False,
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
            }
            for key, reg in regs.items():
                row[key] = [n for n, owner in reg.owners.items() if owner == name]
            row["error"] = None
            rows.append(row)
        for failure in self.failures:
            rows.append(
                {
                    "name": failure.plugin,
                    "module": failure.plugin,
                    "builtin": failure.plugin in self.builtins,
                    "blocked": False,
                    **empty,
                    "error": f"{failure.stage}: {failure.error}",
                }
            )
        return rows


def guarded(plugin: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run plugin code during a run; turn a foreign exception into a one-line PluginError."""
    try:
        return fn(*args, **kwargs)
    except SteerlabError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {plugin!r} failed in {what}: {_error_line(exc)}") from exc


# -- the default host, and thin accessors to it ---------------------------------------------------

_default: PluginHost | None = None


def host() -> PluginHost:
    """The process's default host, built on first use."""
    global _default
    if _default is None:
        _default = PluginHost()
    return _default


def reset() -> None:
    """Drop the default host (its manager, registries and failures); the next call builds a new one
    (tests, and after changing STEERLAB_BLOCK_PLUGINS or the installed plugins)."""
    global _default
    _default = None


def get_plugin_manager() -> pluggy.PluginManager:
    return host().pm


def failures() -> list[PluginFailure]:
    return host().failures


def register(plugin: object, name: str | None = None) -> None:
    host().register(plugin, name)


def unregister(plugin: object) -> None:
    host().unregister(plugin)


def call_each(hook_name: str, registry: Registry[Any] | None = None, **kwargs: Any) -> None:
    host().call_each(hook_name, registry, **kwargs)


def models() -> ModelRegistry:
    return host().models()


def interventions() -> InterventionRegistry:
    return host().interventions()


def scorers() -> ScorerRegistry:
    return host().scorers()


def concepts() -> Any:
    return host().concepts()


def layers_for(model: Any) -> LayerRegistry:
    return host().layers_for(model)


def summary() -> list[dict[str, Any]]:
    return host().summary()
