"""The OpenAPI documents of Stratus's APIs, as a cloud serves them (``serve_openapi``),
written to ``docs/api/<service>.json``: ``python -m tools.openapi_docs`` (``make api-docs``).

The documents are fetched from an in-process cloud (SQLite and the memory bus in a temporary
directory), so what is published is exactly what ``<prefix>/openapi.json`` answers.
``--check`` writes nothing and exits 1 when a committed document differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import UNITS, root_app, run_bootstrap

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api"

#: The units whose APIs have a document, and the file each is published as.
API_UNITS = {"identity-api": "identity", "compute-api": "compute", "image-api": "image",
             "network-api": "network", "volume-api": "volume", "placement-api": "placement"}


def render(document: dict[str, Any]) -> str:
    """A document as committed: sorted keys, two-space indents, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def fetch_documents(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Each API's served document, by service name, from a cloud running every API unit
    with ``serve_openapi`` on."""
    documents = {}
    for unit, service in API_UNITS.items():
        response = await client.get(f"{UNITS[unit].prefix}/openapi.json")
        response.raise_for_status()
        documents[service] = response.json()
    return documents


async def build_documents() -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="stratus-openapi-") as tmp:
        settings = Settings(data_dir=Path(tmp), public_url="http://localhost",
                            admin_password="openapi-docs", serve_openapi=True,
                            identity={"bcrypt_rounds": 4})
        stack = Stack(settings)
        try:
            await run_bootstrap(stack)
            app = await root_app(stack, list(API_UNITS))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://localhost") as client:
                return await fetch_documents(client)
        finally:
            await stack.aclose()


def stale(documents: dict[str, dict[str, Any]], docs: Path = DOCS) -> list[str]:
    """The services whose committed document differs from ``documents``."""
    return [service for service, document in documents.items()
            if not (docs / f"{service}.json").is_file()
            or (docs / f"{service}.json").read_text() != render(document)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a committed document is stale")
    args = parser.parse_args(argv)
    documents = asyncio.run(build_documents())
    if args.check:
        behind = stale(documents)
        for service in behind:
            print(f"docs/api/{service}.json is stale: run make api-docs", file=sys.stderr)
        return 1 if behind else 0
    DOCS.mkdir(parents=True, exist_ok=True)
    for service, document in documents.items():
        (DOCS / f"{service}.json").write_text(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
