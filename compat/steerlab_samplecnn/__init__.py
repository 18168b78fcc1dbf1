"""Deprecated alias of steerlab.builtins.samplecnn (see steerlab.builtins._alias)."""

from steerlab.builtins._alias import alias

alias(__name__)
