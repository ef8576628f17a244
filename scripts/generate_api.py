"""Regenerate the Python bindings of proto/ into telemetry_events/telemetrygateway/v1/.

Usage: python scripts/generate_api.py [--check]

With --check nothing is written; the exit status is 1 when the checked-in code differs
from what the current proto and grpcio-tools would produce.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = "telemetrygateway/v1/telemetrygateway.proto"
TARGET = ROOT / "telemetry_events" / "telemetrygateway" / "v1"
GENERATED = ("telemetrygateway_pb2.py", "telemetrygateway_pb2.pyi", "telemetrygateway_pb2_grpc.py")

# protoc writes absolute imports rooted at proto/; the bindings live inside a package.
_ABSOLUTE_IMPORT = re.compile(r"^from telemetrygateway\.v1 import ", re.MULTILINE)


def generate() -> dict[str, str]:
    """Returns the generated files' names and contents."""
    with tempfile.TemporaryDirectory() as out:
        include = Path(protoc.__file__).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(PROTO_ROOT / PROTO_FILE),
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc failed with status {status}")
        produced = Path(out) / "telemetrygateway" / "v1"
        return {name: _ABSOLUTE_IMPORT.sub("from . import ", (produced / name).read_text()) for name in GENERATED}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in code is stale")
    args = parser.parse_args()
    files = generate()
    if args.check:
        stale = [
            name for name, text in files.items() if not (TARGET / name).exists() or (TARGET / name).read_text() != text
        ]
        if stale:
            print(f"stale generated code: {', '.join(stale)}; run python scripts/generate_api.py", file=sys.stderr)
            return 1
        return 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (TARGET / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
