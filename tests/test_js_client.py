"""The typed JS client (clients/js): its types follow the OpenAPI document, TypeScript checks
the implementation against them, and the BFF serves the same file at a fixed path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.browser import BFF

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "js"
TSC = ROOT / ".npm" / "node_modules" / ".bin" / "tsc"


def tsc(project: Path) -> subprocess.CompletedProcess[str]:
    assert TSC.exists(), f"{TSC} is missing: ./scripts/test installs TypeScript with npm"
    return subprocess.run(
        [str(TSC), "-p", str(project / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_committed_types_are_the_openapi_documents():
    """api.d.ts is what gen_types.py makes of openapi/openapi.json (regenerate, don't edit)."""
    run = subprocess.run(
        [sys.executable, str(CLIENT / "gen_types.py")], capture_output=True, text=True, check=True
    )
    assert run.stdout == (CLIENT / "api.d.ts").read_text()
    assert "export type ProblemCode =" in run.stdout and '"not_authenticated"' in run.stdout


def test_tsc_no_emit_passes_and_catches_a_wrong_type(tmp_path):
    """`tsc --noEmit` (strict, checkJs) passes on the client and its example; the same check
    fails once the implementation disagrees with the declared types."""
    ok = tsc(CLIENT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "js"
    shutil.copytree(CLIENT, broken)
    source = (broken / "index.js").read_text()
    wrong = source.replace("userInfo: () => json(", "userInfo: () => String(")
    assert wrong != source
    (broken / "index.js").write_text(wrong)
    failed = tsc(broken)
    assert failed.returncode != 0 and "Promise<UserInfo>" in failed.stdout


def test_the_package_can_be_published():
    package = json.loads((CLIENT / "package.json").read_text())
    assert package["type"] == "module" and package["types"] == "index.d.ts"
    assert set(package["files"]) == {"index.js", "index.d.ts", "api.d.ts"}
    assert not package.get("dependencies")  # dependency-free
    assert all((CLIENT / name).is_file() for name in package["files"])


async def test_the_bff_serves_the_client_at_a_fixed_path(browser):
    r = await browser.get(f"{BFF}/client/line-auth-bff.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["access-control-allow-origin"] == "*"  # any origin may import it
    assert r.content == (CLIENT / "index.js").read_bytes()
