"""Two checkouts in different folders declare the same build inputs, so neither sees a changed image."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.infra.harness import IMAGE, REPO_ROOT, SERVICE, run_program, stack_config

# What `pulumi up` reads from a checkout: the project file, the program, and the image's build inputs.
PROJECT_FILES = ("Pulumi.yaml", "Dockerfile", ".dockerignore")


def checkout(at: Path) -> Path:
    """A copy of the repository's Pulumi project at `at`."""
    shutil.copytree(REPO_ROOT / "infra", at / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    for name in PROJECT_FILES:
        shutil.copy2(REPO_ROOT / name, at / name)
    return at


def test_build_inputs_do_not_depend_on_where_the_checkout_lives(tmp_path: Path) -> None:
    laptop = checkout(tmp_path / "home" / "alice" / "src" / "catalog-grpc")
    runner = checkout(tmp_path / "runner" / "work" / "catalog-grpc" / "catalog-grpc")
    runs = {root: run_program(stack_config("dev"), root=root) for root in (laptop, runner)}
    for root, deployment in runs.items():
        # Each run is the copy's own program, from the copy's own folder.
        assert Path(deployment.namespace["__file__"]).resolve().is_relative_to(root.resolve())
        assert Path(deployment.namespace["grpc_service"].__file__).resolve().is_relative_to(root.resolve())
        image = deployment.one(IMAGE).inputs
        program_dir = root / "infra"
        assert (program_dir / image["context"]["location"]).resolve() == root.resolve()
        assert (program_dir / image["dockerfile"]["location"]).resolve() == (root / "Dockerfile").resolve()
    first, second = runs.values()
    assert first.one(IMAGE).inputs == second.one(IMAGE).inputs
    assert first.one(SERVICE).inputs == second.one(SERVICE).inputs
