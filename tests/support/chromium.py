"""Debian's Chromium for the real-browser tests: where it is, how it is started, where the
screenshots go. Playwright drives it; it never downloads a browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("BFF_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine-kind notes advise: no sandbox as root, and nothing phoning home.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
