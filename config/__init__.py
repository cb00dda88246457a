"""Deployment settings: YAML in this folder plus environment variables.

This package owns reading and validating configuration. It imports nothing else from the
project, and it never creates a settings object at import time: the app factory and the CLI
call `load_settings()` and pass the result down.
"""

from config.settings import Environment, Settings, SettingsError, load_settings

__all__ = ["Environment", "Settings", "SettingsError", "load_settings"]
