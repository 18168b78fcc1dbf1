"""Built-in plugin: the concepts of ``steerlab steerability`` (docs/steerability.md), each its
own module, registered through the public ``steerlab_register_concepts`` hook. Importing this
package is cheap: each concept imports librosa and numpy's heavier parts only when it scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from steerlab.hookspecs import hookimpl

if TYPE_CHECKING:
    from steerlab.battery.concept import ConceptRegistry

MODULES = ("partial", "note", "chord_quality", "brightness", "onset", "loudness")


@hookimpl
def steerlab_register_concepts(registry: ConceptRegistry) -> None:
    import importlib

    for name in MODULES:
        registry.add(importlib.import_module(f"{__name__}.{name}").CONCEPT)
