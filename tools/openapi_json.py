"""Write the app's OpenAPI document to docs/api/openapi.json, the API reference's source.

Usage: .venv/bin/python tools/openapi_json.py [--check]

The documentation site renders the committed file (it builds without the
app). With ``--check`` it writes nothing and exits 1 when the committed file
differs from what the app generates now.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from any folder
    sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402

OPENAPI_JSON = ROOT / "docs" / "api" / "openapi.json"
# The settings the document depends on, at their defaults, whatever the environment says.
DOCUMENTED_CONFIG: dict[str, Any] = {"METRICS_OPEN": True}


def generated() -> str:
    """Return the document the app serves at /openapi.json, as the committed file's text."""
    response = create_app(DOCUMENTED_CONFIG).test_client().get("/openapi.json")
    return json.dumps(response.get_json(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    text = generated()
    if args.check:
        committed = OPENAPI_JSON.read_text(encoding="utf-8") if OPENAPI_JSON.exists() else ""
        if committed != text:
            print(
                f"{OPENAPI_JSON.relative_to(ROOT)} differs from the app's document; run make docs"
            )
            return 1
        print(f"{OPENAPI_JSON.relative_to(ROOT)} matches the app's document")
        return 0
    OPENAPI_JSON.write_text(text, encoding="utf-8")
    print(f"wrote {OPENAPI_JSON.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
