"""Time as the service reads it: a function that returns epoch seconds.

Everything that decides by the clock (state, session and code lifetimes, rate-limit windows)
takes one, so tests move time forward instead of sleeping, and the sandbox shares the idea.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
