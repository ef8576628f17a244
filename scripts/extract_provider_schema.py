#!/usr/bin/env python3
"""Extract the google provider's argument schema for the resources terraform/ uses into a committed JSON file.

Why this exists: `terraform init` cannot download providers here, so `terraform validate` cannot run. The prebuilt
CDK for Terraform bindings on PyPI (`cdktn-provider-google`) are generated from the provider's own schema and ship
it, in jsii form, inside the wheel. This script reads that jsii assembly and writes, for only the resource and data
source types our `.tf` files use, every argument (required or optional, with its type) and every nested block
(recursively, single or repeated, required or optional). The test suite reads the resulting JSON offline.

How jsii maps back to Terraform:
  * each resource class (base `cdktn.TerraformResource`) documents its Terraform type in a registry link, and its
    constructor takes a `<Class>Config` struct whose properties are exactly the settable arguments (computed-only
    attributes are getters on the class, not config properties; meta-arguments come from an inherited cdktn
    interface and are skipped);
  * a property typed as another struct of this assembly is a block nested at most once; a property typed
    `IResolvable | Struct[]` is a repeatable block; everything else (primitives, lists and maps of primitives) is
    an attribute. The generator also writes "<name> block." as the summary of every block property, which the
    script checks;
  * property names are camelCase and the generator's conversion is not reversible by rule (`sourceMd5Hash` is
    `source_md5hash`, `buildAttribute` is `build`), so the Terraform name is read from the registry anchor in each
    property's docs (`...#source_md5hash`) and only derived from the camelCase when no anchor exists.

Usage:
    python scripts/extract_provider_schema.py --download          # pip-downloads the pinned wheel to a temp dir
    python scripts/extract_provider_schema.py --wheel PATH.whl    # or use a wheel you already have
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TERRAFORM_DIR = REPO_ROOT / "terraform"
DEFAULT_OUTPUT = REPO_ROOT / "terraform" / "provider-schema" / "google-8.x.json"

# cdktn-provider-google 21.1.0 carries hashicorp/google 8.7.0 (its README says so; the script records what it
# finds in the registry links, so a different pin is reported honestly rather than assumed).
BINDINGS_PACKAGE = "cdktn-provider-google"
BINDINGS_VERSION = "21.1.0"

_TYPE_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/(?P<version>[\w.\-]+)/docs/"
    r"(?P<kind>resources|data-sources)/[\w\-]+ (?P<tftype>google_\w+)\}"
)
_ARG_ANCHOR = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/[\w.\-]+/docs/[^#\s]+#(\w+) "
)
_BLOCK_SUMMARY = re.compile(r"^(\w+) block\.")
# Magic Modules writes the provider's enum validation into the docs as: Possible values: ["A", "B"].
_POSSIBLE_VALUES = re.compile(r"Possible values: \[([^\]]*)\]")


class SchemaExtractionError(RuntimeError):
    """The assembly does not look the way this script expects; the message says what was unexpected."""


def camel_to_snake(name: str) -> str:
    """Fallback conversion for properties whose docs carry no registry anchor (few, and all simple names)."""
    if name.endswith("Attribute"):
        # The generator appends "Attribute" to names that clash with construct members (build, system, ...).
        name = name[: -len("Attribute")]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def load_assembly(source: Path) -> dict[str, Any]:
    """Read the jsii assembly from a wheel, a tarball, or a bare `.jsii` file, following compression redirects.

    The wheel keeps the assembly as `_jsii/<name>@<version>.jsii.tgz`, a npm tarball holding `package/.jsii`;
    newer jsii versions may leave a small redirect document there pointing at a gzip-compressed sibling.
    """
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
            if len(names) != 1:
                raise SchemaExtractionError(f"expected one .jsii.tgz in {source.name}, found {names}")
            return _assembly_from_tarball(wheel.read(names[0]))
    if source.name.endswith((".tgz", ".tar.gz")):
        return _assembly_from_tarball(source.read_bytes())
    return _assembly_from_files({".jsii": source.read_bytes()}, ".jsii", source.parent)


def _assembly_from_tarball(data: bytes) -> dict[str, Any]:
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and "/lib/" not in member.name:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[member.name.removeprefix("package/")] = extracted.read()
    if ".jsii" not in files:
        raise SchemaExtractionError("the tarball has no package/.jsii")
    return _assembly_from_files(files, ".jsii", None)


def _assembly_from_files(files: dict[str, bytes], name: str, directory: Path | None) -> dict[str, Any]:
    document = json.loads(files[name])
    if document.get("schema") == "jsii/file-redirect":
        target = document["filename"]
        raw = files.get(target) if directory is None else (directory / target).read_bytes()
        if raw is None:
            raise SchemaExtractionError(f"redirect to {target!r}, which is not in the package")
        if document.get("compression") == "gzip":
            raw = gzip.decompress(raw)
        document = json.loads(raw)
    if not str(document.get("schema", "")).startswith("jsii/"):
        raise SchemaExtractionError(f"not a jsii assembly (schema {document.get('schema')!r})")
    return document


class _Extractor:
    """Walks the jsii types of one assembly; holds the type table so the recursive helpers stay small."""

    def __init__(self, assembly: dict[str, Any]) -> None:
        self.types: dict[str, dict[str, Any]] = assembly["types"]
        self.assembly_name: str = assembly["name"]
        self.provider_versions: set[str] = set()
        self.index = self._index_terraform_types()

    def _index_terraform_types(self) -> dict[tuple[str, str], str]:
        """Map (kind, terraform type) to the fqn of the Config struct the class's constructor takes."""
        index: dict[tuple[str, str], str] = {}
        for fqn, spec in self.types.items():
            if spec.get("kind") != "class" or spec.get("base") not in (
                "cdktn.TerraformResource",
                "cdktn.TerraformDataSource",
            ):
                continue
            match = _TYPE_LINK.search(spec.get("docs", {}).get("summary", ""))
            if not match:
                raise SchemaExtractionError(f"{fqn} documents no Terraform type")
            params = {p["name"]: p["type"] for p in spec.get("initializer", {}).get("parameters", [])}
            config_fqn = params.get("config", {}).get("fqn")
            if not config_fqn:
                # Some data sources take no arguments at all: the config parameter is absent.
                continue
            kind = "resource" if match["kind"] == "resources" else "data"
            index[(kind, match["tftype"])] = config_fqn
            self.provider_versions.add(match["version"])
        return index

    def _properties(self, fqn: str) -> Iterator[dict[str, Any]]:
        """A struct's own properties plus those of the structs it extends inside this assembly."""
        spec = self.types[fqn]
        yield from spec.get("properties", [])
        for parent in spec.get("interfaces", []):
            if parent in self.types:  # cdktn.* interfaces (meta-arguments) live in another assembly
                yield from self._properties(parent)

    def _is_struct(self, type_ref: dict[str, Any]) -> bool:
        target = self.types.get(type_ref.get("fqn", ""))
        return bool(target and target.get("datatype"))

    def _block_target(self, type_ref: dict[str, Any]) -> tuple[str, bool] | None:
        """(struct fqn, repeatable) when the property is a nested block, else None."""
        if self._is_struct(type_ref):
            return type_ref["fqn"], False
        for member in type_ref.get("union", {}).get("types", []):
            collection = member.get("collection")
            if collection and collection["kind"] == "array" and self._is_struct(collection["elementtype"]):
                return collection["elementtype"]["fqn"], True
        return None

    def _attribute_type(self, type_ref: dict[str, Any]) -> str:
        if "primitive" in type_ref:
            return {"boolean": "bool"}.get(type_ref["primitive"], type_ref["primitive"])
        if "collection" in type_ref:
            collection = type_ref["collection"]
            outer = "list" if collection["kind"] == "array" else "map"
            return f"{outer}({self._attribute_type(collection['elementtype'])})"
        if "union" in type_ref:
            members = [m for m in type_ref["union"]["types"] if m.get("fqn") != "cdktn.IResolvable"]
            if len(members) == 1:
                return self._attribute_type(members[0])
        if type_ref.get("fqn") == "cdktn.IResolvable":
            return "any"
        raise SchemaExtractionError(f"unexpected attribute type {type_ref}")

    @staticmethod
    def _terraform_name(prop: dict[str, Any]) -> tuple[str, bool]:
        docs = prop.get("docs", {})
        match = _ARG_ANCHOR.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
        if match:
            return match.group(1), True
        return camel_to_snake(prop["name"]), False

    def struct(self, fqn: str, path: str) -> dict[str, Any]:
        """The arguments and blocks of one Config or nested block struct, recursively."""
        arguments: dict[str, Any] = {}
        blocks: dict[str, Any] = {}
        for prop in self._properties(fqn):
            name, anchored = self._terraform_name(prop)
            required = not prop.get("optional", False)
            target = self._block_target(prop["type"])
            if target is not None:
                summary = _BLOCK_SUMMARY.match(prop.get("docs", {}).get("summary", ""))
                if summary and summary.group(1) != name:
                    raise SchemaExtractionError(
                        f"{path}.{prop['name']}: anchor {name!r} but summary {summary.group(1)!r}"
                    )
                struct_fqn, repeatable = target
                block = self.struct(struct_fqn, f"{path}.{name}")
                block.update({"required": required, "nesting": "list" if repeatable else "single"})
                blocks[name] = dict(sorted(block.items()))
            else:
                entry: dict[str, Any] = {"required": required, "type": self._attribute_type(prop["type"])}
                docs = prop.get("docs", {})
                allowed = _POSSIBLE_VALUES.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
                if allowed and entry["type"] == "string":
                    entry["allowed_values"] = re.findall(r'"([^"]*)"', allowed.group(1))
                if not anchored:
                    entry["name_derived"] = True  # no registry anchor: name converted from camelCase
                arguments[name] = entry
        return {"arguments": dict(sorted(arguments.items())), "blocks": dict(sorted(blocks.items()))}


def used_types(terraform_dir: Path) -> set[tuple[str, str]]:
    """Every (kind, type) that a .tf file under terraform_dir declares as a resource or data source."""
    found: set[tuple[str, str]] = set()
    for tf_file in sorted(terraform_dir.rglob("*.tf")):
        if ".terraform" in tf_file.parts:
            continue
        document = hcl2.loads(tf_file.read_text(encoding="utf-8"))
        for kind in ("resource", "data"):
            for entry in document.get(kind, []):
                found.update((kind, tftype) for tftype in entry)
    return {item for item in found if item[1].startswith("google_")}


def extract(assembly: dict[str, Any], wanted: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build the JSON document for the wanted (kind, type) pairs; an unknown type is an error, not a gap."""
    extractor = _Extractor(assembly)
    result: dict[str, Any] = {"resource": {}, "data": {}}
    missing = []
    for kind, tftype in sorted(wanted):
        config = extractor.index.get((kind, tftype))
        if config is None:
            missing.append(f"{kind}.{tftype}")
            continue
        result[kind][tftype] = extractor.struct(config, tftype)
    if missing:
        raise SchemaExtractionError(f"not in the provider schema: {', '.join(missing)}")
    versions = sorted(extractor.provider_versions)
    return {
        "comment": "Written by scripts/extract_provider_schema.py; do not edit. Rerun it after adding a resource type.",
        "provider": "registry.terraform.io/hashicorp/google",
        "provider_version": versions[0] if len(versions) == 1 else versions,
        "source": f"{assembly['name']}@{assembly['version']} (jsii assembly)",
        "resource": result["resource"],
        "data": result["data"],
    }


def download_wheel(directory: Path) -> Path:
    """pip-download the pinned bindings wheel (no dependencies) with the running interpreter's pip."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--dest",
            str(directory),
            f"{BINDINGS_PACKAGE}=={BINDINGS_VERSION}",
        ],
        check=True,
    )
    wheels = sorted(directory.glob("*.whl"))
    if not wheels:
        raise SchemaExtractionError(f"pip download left no wheel in {directory}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="a cdktn-provider-google wheel, .jsii.tgz or .jsii file")
    source.add_argument("--download", action="store_true", help=f"pip download {BINDINGS_PACKAGE}=={BINDINGS_VERSION}")
    parser.add_argument("--terraform-dir", type=Path, default=DEFAULT_TERRAFORM_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="KIND.TYPE",
        help="also extract this type, e.g. resource.google_compute_network (repeatable)",
    )
    args = parser.parse_args(argv)

    wanted = used_types(args.terraform_dir)
    for item in args.type:
        kind, _, tftype = item.partition(".")
        wanted.add((kind, tftype))

    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp)) if args.download else args.wheel
        assembly = load_assembly(wheel)
    document = extract(assembly, wanted)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(
        f"{args.output}: {len(document['resource'])} resource and {len(document['data'])} data source types "
        f"from google provider {document['provider_version']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
