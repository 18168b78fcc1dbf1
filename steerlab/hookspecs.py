"""The plugin contract: every hook steerlab calls, documented like an API.

Built-in plugins (``steerlab.plugins.DEFAULT_PLUGINS``) and installed plugins
(entry-point group ``steerlab``) implement exactly these hooks, marked with
``steerlab.hookimpl``. Hooks only ever gain arguments (pluggy lets an
implementation accept any subset of a hook's arguments), so a plugin written
against an older steerlab keeps working.

Every ``steerlab_register_*`` hook receives a typed registry and calls its
``add(...)``; return values are ignored. A registry refuses a name that another
plugin already registered, naming both plugins.

``steerlab.plugins.PluginHost`` calls each implementation of a hook separately, in
registration order (built-ins first), through pluggy; what happens when one raises is
``steerlab.plugins.FAILURE_POLICY``'s entry for the hook, stated in each docstring below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from steerlab.battery.concept import ConceptRegistry
    from steerlab.model import AudioModel
    from steerlab.registry import InterventionRegistry, LayerRegistry, ModelRegistry, ScorerRegistry

hookspec = pluggy.HookspecMarker("steerlab")
hookimpl = pluggy.HookimplMarker("steerlab")


@hookspec
def steerlab_register_models(registry: ModelRegistry) -> None:
    """Register model loaders.

    Called once, when the registries are first built. Call
    ``registry.add(ModelSpec(name=..., loader=..., description=...))``; the loader
    takes a :class:`steerlab.model.LoadOptions` and returns a
    :class:`steerlab.model.AudioModel`. Loading is lazy: nothing heavy may happen
    in this hook. A failure is recorded (``steerlab plugins`` shows it) and the
    other plugins still register.
    """


@hookspec
def steerlab_register_layers(model: AudioModel, registry: LayerRegistry) -> None:
    """Register the hook points (layers) of a loaded model.

    Called every time a model is loaded, for every plugin; a plugin adds layers
    only for models it understands (check ``model.family`` or the type). Call
    ``registry.add(LayerInfo(...))``. A layer's ``module_path`` is a dotted path of
    attribute names and integer indices into ``model``, whose output
    ``[batch, channels, frames]`` is what gets patched. A failure fails the load
    with a one-line ``PluginError`` naming the plugin.
    """


@hookspec
def steerlab_register_interventions(registry: InterventionRegistry) -> None:
    """Register intervention types.

    Called once. Call ``registry.add(intervention)`` with an object satisfying
    :class:`steerlab.interventions.InterventionType`: ``name``, ``formula``,
    ``description``, ``value_scale`` and ``apply(act, direction, value, weight, state)
    -> Tensor``, plus the optional members that protocol documents (``prepare``,
    ``needs_direction``, ``check``, ``options_help``, ...); see docs/interventions.md.
    A failure is recorded and the other plugins still register.
    """


@hookspec
def steerlab_register_scorers(registry: ScorerRegistry) -> None:
    """Register scorers.

    Called once. Call ``registry.add(ScorerSpec(name=..., fn=..., description=...))``
    where ``fn(baseline, patched, sample_rate, target_hz) -> dict`` compares a
    patched decode with the baseline decode of the same input
    (``[channels, samples]`` float arrays) and returns JSON-serialisable metrics.
    A failure is recorded and the other plugins still register.
    """


@hookspec
def steerlab_register_concepts(registry: ConceptRegistry) -> None:
    """Register concepts for ``steerlab steerability`` (the steerability battery).

    Called once, when the concept registry is first asked for. Call ``registry.add(concept)``
    with an object satisfying :class:`steerlab.battery.concept.Concept`: ``name``,
    ``description``, ``changes`` (the two directions of change), ``variants``, ``controls``
    (positive-control model -> why it can vouch; empty: none can), ``rule`` (a
    :class:`steerlab.battery.concept.Rule`, thresholds with their rationale), ``delegate`` (None,
    or a pipeline of the concept's own), and ``pairs``, ``render``, ``score``, ``wrong_edits``;
    see docs/steerability.md. Nothing heavy may happen in this hook. A failure is recorded and
    the other plugins still register.
    """


@hookspec
def steerlab_register_commands(cli: click.Group) -> None:
    """Add commands to the ``steerlab`` command line.

    Called once when the CLI starts. Use ``cli.add_command(...)`` or the
    ``@cli.command()`` decorator; import heavy libraries inside the command body so
    ``steerlab --help`` stays fast. A failure is recorded and the other plugins'
    commands are still added.
    """
