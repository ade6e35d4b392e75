"""Configuration: the only package that reads the environment.

`settings` holds the typed models (`Settings` and its groups); `checks` reads them the way the
service does and finds every problem (`load_settings`, `config_problems`).
"""

from __future__ import annotations

from .checks import Problem, config_problems, load_settings, peek
from .settings import (
    AdminSettings,
    AppConfig,
    SandboxSettings,
    Settings,
    TelenorSettings,
    generate_key,
    layered,
)

__all__ = [
    "AdminSettings",
    "AppConfig",
    "Problem",
    "SandboxSettings",
    "Settings",
    "TelenorSettings",
    "config_problems",
    "generate_key",
    "layered",
    "load_settings",
    "peek",
]
