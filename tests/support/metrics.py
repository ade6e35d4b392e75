"""Reading what the BFF writes: JSON log lines and Prometheus samples."""

from __future__ import annotations

import json
import re


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(f"^{pattern}$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
