"""Offline checks of terraform/ against the google provider's schema, for the tests in this directory.

Why: `terraform validate` needs the provider binary, which cannot be downloaded here. The provider's argument
schema is committed instead (terraform/provider-schema/google-8.x.json, written by
scripts/extract_provider_schema.py), and this module checks every resource and data source in the configuration
against it: unknown arguments and blocks, missing required ones, blocks written as arguments (and the reverse), a
single-nested block repeated, and literal values outside the provider's documented enum. Expressions are not
evaluated; a value containing an interpolation is trusted.

python-hcl2 with `with_meta=True` marks every block body with `__start_line__`, which is how a block
(`name { ... }`) is told apart from an argument holding a list of objects (`name = [{ ... }]`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
SCHEMA_PATH = TERRAFORM_DIR / "provider-schema" / "google-8.x.json"

_META_KEYS = {"__start_line__", "__end_line__"}
# Meta-arguments Terraform itself handles on every resource / data source (not in any provider schema).
_RESOURCE_META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
_RESOURCE_META_BLOCKS = {"lifecycle", "provisioner", "connection"}
_LIFECYCLE_KEYS = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
}
_DYNAMIC_KEYS = {"for_each", "iterator", "labels", "content"}


@dataclass(frozen=True)
class Declaration:
    """One `resource` or `data` block of the configuration."""

    kind: str  # "resource" or "data"
    type: str
    name: str
    body: dict[str, Any]
    file: Path

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        return f"{prefix}{self.type}.{self.name}"

    @property
    def line(self) -> int:
        return int(self.body.get("__start_line__", 0))


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The committed provider schema subset."""
    return json.loads(path.read_text(encoding="utf-8"))


def parse_file(path: Path) -> dict[str, Any]:
    """Parse one .tf file, keeping block line numbers (needed to tell blocks from arguments)."""
    return hcl2.loads(path.read_text(encoding="utf-8"), with_meta=True)


def tf_files(directory: Path = TERRAFORM_DIR) -> list[Path]:
    return sorted(p for p in directory.rglob("*.tf") if ".terraform" not in p.parts)


def declarations(documents: Mapping[Path, dict[str, Any]]) -> Iterator[Declaration]:
    """Every resource and data source of the parsed files, in file order."""
    for path, document in documents.items():
        for kind in ("resource", "data"):
            for entry in document.get(kind, []):
                for tftype, instances in entry.items():
                    for name, body in instances.items():
                        if name in _META_KEYS:
                            continue
                        yield Declaration(kind, tftype, name, body, path)


def is_block(value: Any) -> bool:
    """True for the parsed form of one or more `name { ... }` blocks."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "__start_line__" in v for v in value)


def _literal(value: Any) -> bool:
    """A value Terraform will not compute: no interpolation anywhere inside it."""
    return "${" not in json.dumps(value)


def _suggest(name: str, candidates: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_argument_value(where: str, name: str, spec: Mapping[str, Any], value: Any) -> list[str]:
    errors: list[str] = []
    if not _literal(value):
        return errors
    kind = spec["type"]
    if kind in ("string", "number", "bool") and isinstance(value, (list, dict)):
        errors.append(f"{where}: argument {name!r} takes a {kind}, not a {type(value).__name__}")
    elif kind.startswith("list(") and isinstance(value, dict):
        errors.append(f"{where}: argument {name!r} takes a list, not an object")
    elif kind.startswith("map(") and isinstance(value, list):
        errors.append(f"{where}: argument {name!r} takes a map, not a list")
    allowed = spec.get("allowed_values")
    if allowed and isinstance(value, str) and value not in allowed:
        errors.append(f"{where}: {name} = {value!r} is not one of the provider's values {allowed}")
    return errors


def check_body(body: Mapping[str, Any], schema: Mapping[str, Any], where: str, top_level: bool = False) -> list[str]:
    """Errors of one resource body or nested block body against its schema node (recursively)."""
    errors: list[str] = []
    arguments: dict[str, Any] = schema["arguments"]
    blocks: dict[str, Any] = schema["blocks"]
    present_blocks: set[str] = set()

    for key, value in body.items():
        if key in _META_KEYS:
            continue
        line = value[0].get("__start_line__", "?") if is_block(value) else body.get("__start_line__", "?")
        # (arguments carry no line of their own; the enclosing block's line is the closest python-hcl2 gives)
        here = f"{where} (line {line})"
        if top_level and key in _RESOURCE_META_ARGUMENTS and not is_block(value):
            continue
        if top_level and key in _RESOURCE_META_BLOCKS and is_block(value):
            if key == "lifecycle":
                for lifecycle in value:
                    unknown = set(lifecycle) - _LIFECYCLE_KEYS - _META_KEYS
                    errors.extend(f"{here}: unknown lifecycle argument {u!r}" for u in sorted(unknown))
            continue
        if key == "dynamic" and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            # python-hcl2 gives `dynamic "label" { ... }` as [{"label": {...body with line markers...}}].
            for dynamic in value:
                for label, spec in dynamic.items():
                    if label in _META_KEYS:
                        continue
                    errors.extend(_check_dynamic(label, spec, blocks, f"{where}.dynamic.{label}"))
                    present_blocks.add(label)
            continue
        if key in arguments:
            if is_block(value):
                errors.append(f"{here}: {key!r} is an argument; write `{key} = ...`, not a block")
            else:
                errors.extend(_check_argument_value(here, key, arguments[key], value))
            continue
        if key in blocks:
            if not is_block(value):
                errors.append(f"{here}: {key!r} is a block; write `{key} {{ ... }}`, not `{key} = ...`")
                continue
            present_blocks.add(key)
            spec = blocks[key]
            if spec["nesting"] == "single" and len(value) > 1:
                errors.append(f"{here}: block {key!r} may appear at most once, found {len(value)}")
            for item in value:
                errors.extend(check_body(item, spec, f"{where}.{key}"))
            continue
        errors.append(f"{here}: unknown argument or block {key!r}{_suggest(key, set(arguments) | set(blocks))}")

    for name, spec in arguments.items():
        if spec["required"] and name not in body:
            errors.append(f"{where}: missing required argument {name!r}")
    for name, spec in blocks.items():
        if spec["required"] and name not in present_blocks:
            errors.append(f"{where}: missing required block {name!r}")
    return errors


def _check_dynamic(label: str, spec: Mapping[str, Any], blocks: Mapping[str, Any], where: str) -> list[str]:
    if label not in blocks:
        return [f"{where}: dynamic block for unknown block {label!r}{_suggest(label, set(blocks))}"]
    errors = [f"{where}: unknown dynamic argument {k!r}" for k in sorted(set(spec) - _DYNAMIC_KEYS - _META_KEYS)]
    if "for_each" not in spec:
        errors.append(f"{where}: dynamic block without for_each")
    contents = spec.get("content")
    if contents is None or not is_block(contents):
        return [*errors, f"{where}: dynamic block without a content block"]
    for content in contents:
        errors.extend(check_body(content, blocks[label], where))
    return errors


def check_declaration(declaration: Declaration, schema: Mapping[str, Any]) -> list[str]:
    """Errors of one resource or data source; only google_* types are checked (others have no schema here)."""
    where = f"{declaration.file.name}:{declaration.line} {declaration.address}"
    if not declaration.type.startswith("google_"):
        return []
    node = schema[declaration.kind].get(declaration.type)
    if node is None:
        return [f"{where}: type not in {SCHEMA_PATH.name}; run scripts/extract_provider_schema.py --download"]
    return check_body(declaration.body, node, where, top_level=True)


def check_documents(documents: Mapping[Path, dict[str, Any]], schema: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    for declaration in declarations(documents):
        errors.extend(check_declaration(declaration, schema))
    return errors


def check_text(text: str, schema: Mapping[str, Any], name: str = "snippet.tf") -> list[str]:
    """Check HCL given as text (used to prove the checks catch mistakes)."""
    return check_documents({Path(name): hcl2.loads(text, with_meta=True)}, schema)


def strip_meta(value: Any) -> Any:
    """The parsed value without python-hcl2's line markers, for tests that compare structures."""
    if isinstance(value, dict):
        return {k: strip_meta(v) for k, v in value.items() if k not in _META_KEYS}
    if isinstance(value, list):
        return [strip_meta(v) for v in value]
    return value


@dataclass(frozen=True)
class Configuration:
    """The whole terraform/ directory, parsed without line markers, indexed the way the wiring tests ask."""

    resources: dict[tuple[str, str], dict[str, Any]]
    data: dict[tuple[str, str], dict[str, Any]]
    locals: dict[str, Any]
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    terraform: list[dict[str, Any]]

    def resource(self, tftype: str, name: str) -> dict[str, Any]:
        return self.resources[(tftype, name)]

    def of_type(self, tftype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (kind, name), body in self.resources.items() if kind == tftype}


def load_configuration(directory: Path = TERRAFORM_DIR) -> Configuration:
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    data: dict[tuple[str, str], dict[str, Any]] = {}
    local_values: dict[str, Any] = {}
    variables: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    terraform: list[dict[str, Any]] = []
    # The root module only: terraform/modules/* are separate modules with their own variables and outputs.
    for path in sorted(directory.glob("*.tf")):
        document = strip_meta(hcl2.loads(path.read_text(encoding="utf-8")))
        for kind, target in (("resource", resources), ("data", data)):
            for entry in document.get(kind, []):
                for tftype, instances in entry.items():
                    for name, body in instances.items():
                        target[(tftype, name)] = body
        for block in document.get("locals", []):
            local_values.update(block)
        for entry in document.get("variable", []):
            variables.update(entry)
        for entry in document.get("output", []):
            outputs.update(entry)
        terraform.extend(document.get("terraform", []))
    return Configuration(resources, data, local_values, variables, outputs, terraform)


def only(blocks: Any) -> dict[str, Any]:
    """The single body of a block that may appear once (python-hcl2 always gives a list)."""
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected exactly one block, got {blocks!r}"
    return blocks[0]
