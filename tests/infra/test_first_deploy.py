"""The first deploy of dev, as README.md and docs/deploying.md write it, runs on the committed stack.

The config commands of each recipe are applied to Pulumi.dev.yaml as the CLI would apply them, and the
program runs on the result: a recipe that leaves a key depending on one it removed fails here, not at a
newcomer's first `pulumi up`.
"""

from __future__ import annotations

import pytest

from tests.docs.markdown import REPO_ROOT, Page, split_command
from tests.infra.harness import PROJECT, SERVICE, run_program, stack_config

# The page and a line that only its first-deploy block has.
RECIPES = {
    "README.md": "pulumi stack select --create dev",
    "docs/deploying.md": "pulumi stack select --create dev",
}


def recipe(page: str, marker: str) -> list[list[str]]:
    """The `pulumi config` commands of the page's shell block that holds `marker`, as shell words."""
    blocks = [block for block in Page.read(REPO_ROOT / page).code_blocks if marker in "\n".join(block.lines)]
    assert len(blocks) == 1, f"{page}: expected one block with {marker!r}, found {len(blocks)}"
    commands = [split_command(line) for line in blocks[0].lines]
    return [words for words in commands if words[:2] == ["pulumi", "config"]]


def apply_config_commands(config: dict[str, object], commands: list[list[str]]) -> dict[str, object]:
    """`config` after `pulumi config set KEY VALUE` and `pulumi config rm KEY`, namespaced as the CLI does."""
    result = dict(config)
    for words in commands:
        verb, key = words[2], words[3]
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        if verb == "set":
            (value,) = words[4:]
            result[full_key] = value
        elif verb == "rm":
            assert full_key in result, f"`pulumi config rm {key}` removes nothing from Pulumi.dev.yaml"
            del result[full_key]
        else:
            raise AssertionError(f"unexpected config command {' '.join(words)}")
    return result


@pytest.mark.parametrize("page", sorted(RECIPES))
def test_documented_first_deploy_of_dev_runs(page: str) -> None:
    commands = recipe(page, RECIPES[page])
    assert commands, f"{page}: the first deploy sets no config"
    config = apply_config_commands(stack_config("dev"), commands)
    deployment = run_program(config, stack="dev")
    service = deployment.one(SERVICE)
    assert service.inputs["project"] == config["gcp:project"]
    # Without GitHub Actions the recipe drops the CI identity, and with it what depends on it.
    assert f"{PROJECT}:githubRepository" not in config
    assert "workloadIdentityProvider" not in deployment.outputs
