"""Typed registries that the ``steerlab_register_*`` hooks fill.

Each entry remembers which plugin added it, so a duplicate name is rejected with
a message naming both plugins, and ``steerlab plugins`` can say who registered what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from steerlab.errors import DuplicateNameError, SteerlabError, UnknownNameError

if TYPE_CHECKING:
    import numpy as np

    from steerlab.interventions import InterventionType
    from steerlab.model import AudioModel, LayerInfo, LoadOptions

T = TypeVar("T")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    loader: Callable[[LoadOptions], AudioModel]
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    fn: Callable[[np.ndarray, np.ndarray, int, tuple[float, ...]], dict[str, Any]]
    description: str = ""
    # what the scorer reads: "audio" (decodes) or a model's ``output_kind``; a ``fn`` that
    # declares a ``model`` parameter also receives the model
    output_kind: str = "audio"


@dataclass
class Registry(Generic[T]):
    """Name -> item, with the registering plugin of each name; ``what`` names an item in
    messages (``"intervention"``, ``"layer of model x"``)."""

    what: str
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    current_plugin: str = "<direct>"

    def add(self, item: T, name: str | None = None) -> T:
        name = name or getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise SteerlabError(f"{self.what} registered by {self.current_plugin} has no name")
        if name in self.items:
            raise DuplicateNameError(
                f"{self.what} {name!r} registered twice: by plugin {self.owners[name]!r} "
                f"and by plugin {self.current_plugin!r}; block one with STEERLAB_BLOCK_PLUGINS"
            )
        self.items[name] = item
        self.owners[name] = self.current_plugin
        return item

    def get(self, name: str) -> T:
        try:
            return self.items[name]
        except KeyError:
            raise UnknownNameError(self.what, name, self.items) from None

    def names(self) -> list[str]:
        return list(self.items)

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def __iter__(self) -> Iterator[T]:
        return iter(self.items.values())

    def __len__(self) -> int:
        return len(self.items)


class ModelRegistry(Registry["ModelSpec"]):
    def __init__(self) -> None:
        super().__init__("model")


class InterventionRegistry(Registry["InterventionType"]):
    def __init__(self) -> None:
        super().__init__("intervention")

    def get(self, name: str) -> InterventionType:
        return super().get(name)


class ScorerRegistry(Registry["ScorerSpec"]):
    def __init__(self) -> None:
        super().__init__("scorer")


class LayerRegistry(Registry["LayerInfo"]):
    """Layers of one model, in forward order; aliases map short names to layers; ``same_tensor``
    maps a layer whose output is the very tensor of an earlier layer (an identity hook point on
    it, as encodec's ``latent`` on the encoder's last conv) to that layer."""

    def __init__(self, model_name: str = "") -> None:
        super().__init__(f"layer of model {model_name}" if model_name else "layer")
        self.aliases: dict[str, str] = {}
        self.same_tensor: dict[str, str] = {}

    def declare_same_tensor(self, name: str, target: str) -> None:
        """Record that layer ``name`` outputs the same tensor as layer ``target`` (both registered
        names). Raises :class:`SteerlabError` for an unknown name."""
        for n in (name, target):
            if n not in self.items:
                raise SteerlabError(f"same-tensor declaration {name!r} = {target!r}: unknown layer {n!r}")
        self.same_tensor[name] = self.same_tensor.get(target, target)

    def tensor_of(self, name: str) -> str:
        """The first registered layer name (in forward order) whose output is the tensor that layer
        (or alias) ``name`` gives. Raises :class:`UnknownNameError` for an unknown name."""
        layer = self.get(name).name
        return self.same_tensor.get(layer, layer)

    def names_of_tensor(self, name: str) -> list[str]:
        """Every name of the tensor layer (or alias) ``name`` gives: its layer names in forward
        order, then the aliases of each."""
        tensor = self.tensor_of(name)
        layers = [n for n in self.items if self.same_tensor.get(n, n) == tensor]
        return [*layers, *[a for a, t in self.aliases.items() if t in layers]]

    def alias(self, alias: str, target: str) -> None:
        if target not in self.items:
            raise SteerlabError(f"alias {alias!r} points at unknown layer {target!r}")
        if alias in self.items or alias in self.aliases:
            raise DuplicateNameError(f"layer alias {alias!r} registered twice (last by {self.current_plugin!r})")
        self.aliases[alias] = target

    def get(self, name: str) -> LayerInfo:
        name = self.aliases.get(name, name)
        if name in self.items:
            return self.items[name]
        raise UnknownNameError("layer", name, [*self.items, *self.aliases])
