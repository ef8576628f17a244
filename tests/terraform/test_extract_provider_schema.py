"""scripts/extract_provider_schema.py turns a jsii assembly into the schema the offline check trusts.

The real assembly is 130 MB and needs a download, so these tests build a tiny assembly with the same shapes the
cdktn generator emits (Config structs, single and repeatable blocks, registry anchors, renamed properties,
compressed redirects) and check the mapping back to Terraform names and nesting.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "@cdktn/provider-google.pubsubThing"
DOCS = "https://registry.terraform.io/providers/hashicorp/google/8.7.0/docs/resources/pubsub_thing"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "extract_provider_schema", REPO_ROOT / "scripts" / "extract_provider_schema.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


extractor = _load_script()


def _prop(
    name: str, type_: dict[str, Any], anchor: str | None, optional: bool = True, summary: str = ""
) -> dict[str, Any]:
    docs: dict[str, str] = {"summary": summary or f"The {name}."}
    if anchor:
        docs["remarks"] = f"Docs at Terraform Registry: {{@link {DOCS}#{anchor} PubsubThing#{anchor}}}"
    prop: dict[str, Any] = {"name": name, "type": type_, "docs": docs}
    if optional:
        prop["optional"] = True
    return prop


def _struct(name: str, props: list[dict[str, Any]], interfaces: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": "interface", "datatype": True, "fqn": f"{PREFIX}.{name}", "properties": props}
    if interfaces:
        spec["interfaces"] = interfaces
    return spec


def mini_assembly() -> dict[str, Any]:
    string = {"primitive": "string"}
    boolean = {"union": {"types": [{"primitive": "boolean"}, {"fqn": "cdktn.IResolvable"}]}}
    rule_list = {
        "union": {
            "types": [
                {"fqn": "cdktn.IResolvable"},
                {"collection": {"kind": "array", "elementtype": {"fqn": f"{PREFIX}.PubsubThingRule"}}},
            ]
        }
    }
    types = {
        f"{PREFIX}.PubsubThing": {
            "kind": "class",
            "base": "cdktn.TerraformResource",
            "fqn": f"{PREFIX}.PubsubThing",
            "docs": {"summary": f"Represents a {{@link {DOCS} google_pubsub_thing}}."},
            "initializer": {
                "parameters": [
                    {"name": "scope", "type": {"fqn": "constructs.Construct"}},
                    {"name": "id", "type": string},
                    {"name": "config", "type": {"fqn": f"{PREFIX}.PubsubThingConfig"}},
                ]
            },
        },
        f"{PREFIX}.PubsubThingConfig": _struct(
            "PubsubThingConfig",
            [
                _prop("name", string, "name", optional=False),
                _prop("sourceMd5Hash", string, "source_md5hash"),
                _prop("buildAttribute", string, None),
                _prop("ingress", string, "ingress", summary='Ingress. Possible values: ["ALL", "INTERNAL"]'),
                _prop("enabled", boolean, "enabled"),
                _prop("labels", {"collection": {"kind": "map", "elementtype": string}}, "labels"),
                _prop(
                    "settings",
                    {"fqn": f"{PREFIX}.PubsubThingSettings"},
                    "settings",
                    optional=False,
                    summary="settings block.",
                ),
                _prop("rule", rule_list, "rule", summary="rule block."),
            ],
            interfaces=["cdktn.TerraformMetaArguments"],
        ),
        f"{PREFIX}.PubsubThingSettings": _struct(
            "PubsubThingSettings",
            [
                _prop("ipv4Enabled", boolean, "ipv4_enabled"),
            ],
        ),
        f"{PREFIX}.PubsubThingRule": _struct(
            "PubsubThingRule",
            [
                _prop(
                    "ports",
                    {"collection": {"kind": "array", "elementtype": {"primitive": "number"}}},
                    "ports",
                    optional=False,
                ),
            ],
        ),
    }
    return {"schema": "jsii/0.10.0", "name": "@cdktn/provider-google", "version": "0.0.1", "types": types}


WANTED = {("resource", "google_pubsub_thing")}


def test_config_properties_map_back_to_terraform_names_and_nesting() -> None:
    document = extractor.extract(mini_assembly(), WANTED)
    assert document["provider_version"] == "8.7.0"
    thing = document["resource"]["google_pubsub_thing"]
    assert thing["arguments"] == {
        "build": {"required": False, "type": "string", "name_derived": True},
        "enabled": {"required": False, "type": "bool"},
        "ingress": {"required": False, "type": "string", "allowed_values": ["ALL", "INTERNAL"]},
        "labels": {"required": False, "type": "map(string)"},
        "name": {"required": True, "type": "string"},
        "source_md5hash": {"required": False, "type": "string"},
    }
    assert thing["blocks"]["settings"] == {
        "arguments": {"ipv4_enabled": {"required": False, "type": "bool"}},
        "blocks": {},
        "nesting": "single",
        "required": True,
    }
    assert thing["blocks"]["rule"]["nesting"] == "list"
    assert thing["blocks"]["rule"]["arguments"] == {"ports": {"required": True, "type": "list(number)"}}


def test_a_type_missing_from_the_assembly_is_an_error() -> None:
    with pytest.raises(extractor.SchemaExtractionError, match="resource.google_pubsub_nothing"):
        extractor.extract(mini_assembly(), WANTED | {("resource", "google_pubsub_nothing")})


def test_block_summary_disagreeing_with_anchor_is_an_error() -> None:
    assembly = mini_assembly()
    assembly["types"][f"{PREFIX}.PubsubThingConfig"]["properties"][6]["docs"]["summary"] = "setting block."
    with pytest.raises(extractor.SchemaExtractionError, match="anchor 'settings' but summary 'setting'"):
        extractor.extract(assembly, WANTED)


def test_camel_to_snake_fallback() -> None:
    assert extractor.camel_to_snake("maxInstanceCount") == "max_instance_count"
    assert extractor.camel_to_snake("systemAttribute") == "system"
    assert extractor.camel_to_snake("ipv4Enabled") == "ipv4_enabled"


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_assembly_is_read_from_a_wheel_through_a_gzip_redirect(tmp_path: Path) -> None:
    redirect = {"schema": "jsii/file-redirect", "compression": "gzip", "filename": ".jsii.gz"}
    tarball = _tarball(
        {
            "package/.jsii": json.dumps(redirect).encode(),
            "package/.jsii.gz": gzip.compress(json.dumps(mini_assembly()).encode()),
            "package/lib/thing/index.js": b"// skipped",
        }
    )
    wheel = tmp_path / "cdktn_provider_google-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("cdktn_provider_google/_jsii/provider-google@0.0.1.jsii.tgz", tarball)
    assembly = extractor.load_assembly(wheel)
    assert extractor.extract(assembly, WANTED)["resource"]["google_pubsub_thing"]["blocks"]["settings"]["required"]


def test_main_writes_only_the_types_terraform_uses(tmp_path: Path) -> None:
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "main.tf").write_text(
        'resource "google_pubsub_thing" "a" {\n  name = "a"\n}\nresource "random_id" "r" {}\n'
    )
    source = tmp_path / "assembly.jsii"
    source.write_text(json.dumps(mini_assembly()))
    output = tmp_path / "schema.json"
    assert (
        extractor.main(["--wheel", str(source), "--terraform-dir", str(tmp_path / "tf"), "--output", str(output)]) == 0
    )
    document = json.loads(output.read_text())
    assert list(document["resource"]) == ["google_pubsub_thing"]
    assert document["data"] == {}
