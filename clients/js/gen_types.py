"""Write `api.d.ts`: the TypeScript types of the OpenAPI document's schemas.

    .venv/bin/python clients/js/gen_types.py > clients/js/api.d.ts

The suite checks that the committed file is what this prints (tests/test_js_client.py), so
the client's types follow openapi/openapi.json. It covers what the document uses: objects,
arrays, enums, `$ref`, `anyOf` with null, and the scalar types.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
SKIP = {"HTTPValidationError", "ValidationError"}  # FastAPI's; the API answers Problems
SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}


def ts(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "anyOf" in schema:
        return " | ".join(ts(part) for part in schema["anyOf"])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    if kind == "array":
        return f"Array<{ts(schema.get('items', {}))}>"
    if kind == "object" or "properties" in schema:
        return interface_body(schema)
    return SCALARS.get(str(kind), "unknown")


def interface_body(schema: dict[str, Any], indent: str = "") -> str:
    required = set(schema.get("required", []))
    lines = ["{"]
    for name, prop in schema.get("properties", {}).items():
        doc = prop.get("description")
        if doc:
            lines.append(f"{indent}  /** {doc} */")
        optional = "" if name in required else "?"
        lines.append(f"{indent}  {name}{optional}: {ts(prop)};")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def main() -> int:
    document = json.loads(DOCUMENT.read_text())
    out = [
        "// Generated from openapi/openapi.json by clients/js/gen_types.py; do not edit.",
        f"// {document['info']['title']} {document['info']['version']}",
        "",
    ]
    for name, schema in sorted(document["components"]["schemas"].items()):
        if name in SKIP:
            continue
        if schema.get("description"):
            out.append(f"/** {schema['description'].splitlines()[0]} */")
        if schema.get("type") == "object" or "properties" in schema:
            out.append(f"export interface {name} {interface_body(schema)}")
        else:
            out.append(f"export type {name} = {ts(schema)};")
        out.append("")
    problem_type = document["components"]["schemas"]["Problem"]["properties"]["type"]
    prefix = "urn:line-auth-bff:problem:"
    codes = [value.removeprefix(prefix) for value in problem_type["enum"]]
    out.append("/** The code at the end of a Problem's `type` URN. */")
    out.append(f"export type ProblemCode = {' | '.join(json.dumps(c) for c in codes)};")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
