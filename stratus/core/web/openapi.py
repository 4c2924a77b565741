"""Request bodies in an API's OpenAPI document for routes that read their body themselves.

FastAPI documents a body it parses (a pydantic parameter). A route that parses its own (the
Network API's single-or-bulk creates, the Image API's JSON patch, the Block Storage actions)
names it here, built from the same pydantic models, so the document says what is accepted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

JSON = "application/json"


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema (validation side, by alias) with its ``$defs`` inlined, so it
    can sit anywhere in a document."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def inline(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 16:
                return inline(definitions[ref.removeprefix("#/$defs/")], depth + 1)
            return {key: inline(value, depth) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item, depth) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


def wrapped(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``{key: <schema>}``: the OpenStack envelope of one resource."""
    return {"type": "object", "properties": {key: schema}, "required": [key],
            "additionalProperties": False}


def request_body(schema: dict[str, Any], media_type: str = JSON) -> dict[str, Any]:
    """A route's ``openapi_extra`` naming its (required) body."""
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}
