"""Microsoft's REST specs (swagger 2.0) as JSON Schema validators, and their examples by operation.

`SpecSet(spec_dir)` loads every swagger file of one API version; `examples()` yields each example with
its operation (path, method, operationId, response schemas); `validate(schema, body)` returns the
schema errors. References into spec files that are not in the reference copy accept anything, and
extensible enums (`x-ms-enum.modelAsString`) are not enforced, as the SDKs do not enforce them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

_METHODS = ("get", "put", "post", "patch", "delete", "head")


def _clean(node: Any, base: Path) -> Any:
    """Swagger → JSON Schema: refs to absent files become `{}`, extensible enums are dropped."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            target = (base / ref.split("#", 1)[0]).resolve()
            if not target.exists():
                return {}
        cleaned = {k: _clean(v, base) for k, v in node.items()}
        if isinstance(node.get("x-ms-enum"), dict) and node["x-ms-enum"].get("modelAsString", True):
            cleaned.pop("enum", None)
        return cleaned
    if isinstance(node, list):
        return [_clean(v, base) for v in node]
    return node


@dataclass
class Example:
    name: str
    file: Path
    spec_file: Path
    path: str  # the spec's path template
    method: str
    operation_id: str
    responses: dict[str, Any]  # status -> {"schema": ...} (refs relative to spec_file)
    data: dict[str, Any]  # the example: {"parameters": ..., "responses": ...}


class SpecSet:
    def __init__(self, spec_dir: Path) -> None:
        self.spec_dir = spec_dir.resolve()
        self._docs: dict[Path, Any] = {}
        registry: Registry = Registry()
        for path in sorted(self.spec_dir.rglob("*.json")):
            self._load(path)
        # common-types and other relative neighbours referenced from outside the version folder
        for path, doc in list(self._docs.items()):
            for ref in _refs(doc):
                target = (path.parent / ref).resolve()
                if target.exists() and target not in self._docs:
                    self._load(target)
        for path, doc in self._docs.items():
            registry = registry.with_resource(path.as_uri(), Resource(contents=doc, specification=DRAFT4))
        self.registry = registry

    def _load(self, path: Path) -> None:
        self._docs[path.resolve()] = _clean(json.loads(path.read_text(encoding="utf-8")), path.parent)

    def examples(self) -> list[Example]:
        found = []
        for spec_file, doc in self._docs.items():
            for template, item in (doc.get("paths") or {}).items():
                for method in _METHODS:
                    operation = item.get(method)
                    if not isinstance(operation, dict):
                        continue
                    for name, ref in (operation.get("x-ms-examples") or {}).items():
                        if "$ref" not in ref:  # an example not in the reference copy
                            continue
                        file = (spec_file.parent / ref["$ref"]).resolve()
                        if file.exists():
                            found.append(
                                Example(
                                    name=name,
                                    file=file,
                                    spec_file=spec_file,
                                    path=template,
                                    method=method.upper(),
                                    operation_id=operation["operationId"],
                                    responses=operation.get("responses", {}),
                                    data=json.loads(file.read_text(encoding="utf-8")),
                                )
                            )
        return sorted(found, key=lambda e: e.file.name)

    def response_schema(self, example: Example, status: int) -> dict[str, Any] | None:
        response = example.responses.get(str(status)) or example.responses.get("default")
        if not response or "schema" not in response:
            return None
        schema = dict(response["schema"])
        ref = schema.get("$ref")
        if isinstance(ref, str):
            file, _, fragment = ref.partition("#")
            target = (example.spec_file.parent / file).resolve() if file else example.spec_file
            schema["$ref"] = f"{target.as_uri()}#{fragment}"
        return schema

    def validate(self, schema: dict[str, Any], body: Any) -> list[str]:
        """Messages of every schema violation (empty when the body fits)."""
        validator = Draft4Validator(schema, registry=self.registry)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(body)
        ]


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            found.append(ref.split("#", 1)[0])
        for value in node.values():
            found.extend(_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_refs(value))
    return found
