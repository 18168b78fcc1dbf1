"""The built-in plugins: one subpackage each, loaded by import path from ``steerlab.plugins.DEFAULT_PLUGINS``.

Each registers itself through exactly the hooks a third-party plugin uses; nothing in the core imports
them directly.
"""
