"""The Telenor sandbox: `Sandbox(settings).app` is its ASGI app."""

from .app import Sandbox

__all__ = ["Sandbox"]
