"""The concepts registered through ``steerlab_register_concepts`` (the default plugin host's)."""

from __future__ import annotations

from steerlab.battery.concept import ConceptRegistry


def concepts() -> ConceptRegistry:
    from steerlab import plugins

    reg: ConceptRegistry = plugins.concepts()
    return reg
