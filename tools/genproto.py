"""Regenerate the `catalog` package (messages, gRPC stubs and their .pyi) from proto/ (`make proto`)."""

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "catalog"
GENERATED = ("catalog_pb2.py", "catalog_pb2.pyi", "catalog_pb2_grpc.py", "catalog_pb2_grpc.pyi")


def generate(out_dir: Path) -> None:
    """Write the generated modules of proto/catalog/*.proto into out_dir/catalog/."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    plugin = shutil.which("protoc-gen-mypy_grpc", path=str(Path(sys.executable).parent))
    if plugin is None:
        raise SystemExit("protoc-gen-mypy_grpc not found next to this Python: install requirements-dev.txt")
    args = [
        "protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy_grpc={plugin}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")


def main() -> None:
    """Regenerate into a scratch folder first, so a failed run leaves the committed code untouched."""
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        for name in GENERATED:
            shutil.copyfile(Path(scratch) / PACKAGE / name, ROOT / PACKAGE / name)
    print(f"regenerated {', '.join(GENERATED)} in {PACKAGE}/")


if __name__ == "__main__":
    main()
