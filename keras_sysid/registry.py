"""Layer families whose members register themselves by a ``type_name``.

A family (readouts, cores) is a base class whose subclasses set a class
attribute ``type_name``; defining the subclass registers it, so adding a
member means adding a file. :meth:`Registry.get` turns whatever a user or a
config holds into a layer, in the style of ``keras.initializers.get``.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil

import keras


class Registry:
    """The members of one layer family, by ``type_name``.

    Args:
        family: What the members are, for error messages (``"readout"``).
    """

    def __init__(self, family: str):
        self.family = family
        self._classes: dict[str, type] = {}

    def add(self, cls: type) -> None:
        """Registers ``cls`` under ``cls.type_name`` (called by the family's base class)."""
        name = cls.type_name
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__}.type_name must be a non-empty string; got {name!r}.")
        known = self._classes.get(name)
        # Re-running a module (importlib.reload, notebooks) redefines the same class.
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"Two {self.family}s claim type_name {name!r}: {known.__module__}.{known.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}."
            )
        self._classes[name] = cls

    def names(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._classes)

    def classes(self) -> dict[str, type]:
        """``{type_name: class}``, sorted by name."""
        return {name: self._classes[name] for name in self.names()}

    def __getitem__(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"Unknown {self.family} type {name!r}; choose one of {self.names()}.")
        return self._classes[name]

    def __contains__(self, name) -> bool:
        return name in self._classes

    def get(self, spec, **overrides) -> keras.layers.Layer:
        """A layer of this family from a layer, a type name, a ``{"type": ...}`` dict or a Keras config.

        Args:
            spec: A layer (returned as is); a registered type name; a dict
                ``{"type": name, **constructor_arguments}``; or a Keras config
                ``{"class_name": ..., "config": {...}}`` as
                ``keras.saving.serialize_keras_object`` writes (deserialised in
                safe mode).
            **overrides: Constructor arguments that replace the spec's (e.g.
                ``n_neurons``, ``name``); ignored for a layer.

        Returns:
            A new, unbuilt layer (or ``spec`` itself if it is one).

        Raises:
            ValueError: unknown type, or arguments the class refuses.
        """
        if isinstance(spec, keras.layers.Layer):
            return spec
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict):
            raise ValueError(
                f"A {self.family} must be a layer, a type name or a dict; got {type(spec).__name__}."
            )
        spec = copy.deepcopy(spec)
        if "class_name" in spec:
            spec["config"] = {**spec.get("config", {}), **overrides}
            try:
                return keras.saving.deserialize_keras_object(spec, safe_mode=True)
            except (TypeError, ValueError) as error:
                raise ValueError(f"Cannot make a {self.family} from config {spec.get('class_name')!r}: {error}") from None
        type_name = spec.pop("type", None)
        cls = self[type_name]
        spec.update(overrides)
        try:
            return cls(**spec)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Bad arguments for {self.family} {type_name!r}: {error}") from None


def import_submodules(package_name: str, package_path) -> None:
    """Imports every public module of a package, so each registers its layers.

    Modules whose names start with ``_`` are shared helpers and are left to
    their importers.
    """
    for module in pkgutil.iter_modules(package_path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")
