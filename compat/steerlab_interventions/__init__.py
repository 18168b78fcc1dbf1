"""Deprecated alias of steerlab.builtins.interventions (see steerlab.builtins._alias)."""

from steerlab.builtins._alias import alias

alias(__name__)
