"""The API contract: buf-clean, wire-compatible with the seed, generated code fresh, seed clients working."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.catalog_file import load_catalog
from service.config import Settings
from tests.servers import in_process
from tools import genproto

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seed" / "000_bd42cc0a257207f6.txt"


def buf() -> str:
    """The buf binary that `make setup` installs from npm."""
    path = ROOT / "node_modules" / ".bin" / "buf"
    if not path.exists():
        pytest.skip("buf is not installed: run `make setup` (npm install)")
    return str(path)


# The seed tutorial's catalog.proto, kept in the repository so the compatibility checks also run where the
# tutorial is not beside the checkout (GitHub); a test keeps the copy equal to the tutorial where it is.
SEED_PROTO = Path(__file__).with_name("seed_catalog.proto")


def test_seed_proto_copy_matches_the_tutorial() -> None:
    if not SEED.exists():
        pytest.skip(f"the seed tutorial is not beside the repository ({SEED})")
    match = re.search(r"```protobuf\n(.*?)```", SEED.read_text(encoding="utf-8"), re.DOTALL)
    assert match, "the seed no longer holds a protobuf block"
    assert SEED_PROTO.read_text(encoding="utf-8") == match.group(1)


@pytest.fixture
def seed_proto(tmp_path: Path) -> Path:
    """The seed's catalog.proto in a scratch folder of its own."""
    path = tmp_path / "seed" / "catalog.proto"
    path.parent.mkdir()
    shutil.copy(SEED_PROTO, path)
    return path


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    genproto.generate(tmp_path)
    stale = [
        name
        for name in genproto.GENERATED
        if not filecmp.cmp(tmp_path / "catalog" / name, ROOT / "catalog" / name, shallow=False)
    ]
    assert not stale, f"catalog/{stale} differ from proto/: run `make proto` and commit"


def run_buf(*args: str) -> subprocess.CompletedProcess[str]:
    """Run buf on the repository's module, capturing its output."""
    return subprocess.run([buf(), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_buf_lint_and_format_are_clean() -> None:
    lint = run_buf("lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run_buf("format", "--diff", "--exit-code")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_api_is_wire_and_json_compatible_with_the_seed(seed_proto: Path) -> None:
    # The seed's file sits at the package path buf expects, so the two modules line up file by file.
    against = seed_proto.parent.parent / "against"
    (against / "catalog").mkdir(parents=True)
    shutil.copy(seed_proto, against / "catalog" / "catalog.proto")
    result = run_buf("breaking", "--against", str(against))
    assert result.returncode == 0, result.stdout + result.stderr


SEED_CLIENT = """
import sys
import grpc
import catalog_pb2
import catalog_pb2_grpc

# The seed's run_client, on a cleartext channel (the local server has no TLS).
channel = grpc.insecure_channel(sys.argv[1])
stub = catalog_pb2_grpc.ProductCatalogStub(channel)
product = stub.GetProduct(catalog_pb2.GetProductRequest(id="1"))
print(f"Product: {product.name}, Price: ${product.price}")
response = stub.ListProducts(catalog_pb2.ListProductsRequest(category="electronics", page_size=10))
for product in response.products:
    print(f"  {product.name}: ${product.price} (in stock: {product.in_stock})")
print(f"  Total: {response.total_count}")
for product in stub.SearchProducts(catalog_pb2.SearchRequest(query="desk", max_results=5)):
    print(f"  {product.name}: {product.description}")
channel.close()
"""


def test_a_client_generated_from_the_seed_proto_works_unchanged(seed_proto: Path) -> None:
    out = seed_proto.parent
    # A separate process: the seed's module registers the same message names in protobuf's global pool.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={out}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(seed_proto),
        ],
        check=True,
        timeout=60,
    )
    (out / "seed_client.py").write_text(SEED_CLIENT, encoding="utf-8")
    with in_process(Settings(port=0), load_catalog()) as server:
        result = subprocess.run(
            [sys.executable, "seed_client.py", f"localhost:{server.port}"],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == textwrap.dedent(
        """\
        Product: Laptop Pro 16, Price: $1299.99
          Laptop Pro 16: $1299.99 (in stock: True)
          Wireless Mouse: $49.99 (in stock: True)
          Monitor 27 4K: $449.99 (in stock: True)
          Total: 3
          Standing Desk: Adjustable standing desk
          Desk Lamp: LED desk lamp with dimmer
        """
    )
