"""Config the program must refuse before declaring anything, and the `image` and `invokers` options.

The bounds are tested from the table itself (config.py's declarations): every integer key at, just below and
just above each bound, every choice key at each choice and between them, and Pulumi.yaml against the types.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pytest
from catalog_infra import config
from catalog_infra.config_keys import Key, declared

from tests.infra.harness import (
    IMAGE,
    INVOKER,
    PROJECT,
    SERVICE,
    Mocks,
    RecordingMonitor,
    project_file,
    run_program,
    stack_config,
    wire_value,
    with_project_config,
)

BASE: dict[str, object] = {"gcp:project": "my-gcp-project-dev", "gcp:region": "us-central1"}
PREBUILT = "europe-docker.pkg.dev/other-project/images/catalog@sha256:" + "a" * 64


def with_config(**overrides: object) -> dict[str, object]:
    return {**BASE, **{f"{PROJECT}:{key}": value for key, value in overrides.items()}}


# (key, value, other settings, words the error must carry about what is allowed). Integer bounds are tested
# from the table below, key by key.
INVALID: list[tuple[str, object, dict[str, object], str]] = [
    ("minInstances", "many", {}, "integer"),
    ("maxInstances", 2, {"minInstances": 3}, "from 3 to 1000 (at least 1 and at least minInstances, 3)"),
    ("cpu", "3", {}, "one of 1, 2, 4, 6, 8"),
    ("cpu", "lots", {}, "one of 1, 2, 4, 6, 8"),
    ("cpu", "0.05", {"concurrency": 1}, "0.08 to 0.99"),
    ("cpu", "0.5", {}, "concurrency 1"),
    ("memory", "lots", {}, "512Mi"),
    ("memory", "512", {}, "512Mi"),
    ("memory", "8Gi", {"cpu": "1"}, "128Mi to 4Gi"),
    ("memory", "1Gi", {"cpu": "4"}, "2Gi to 16Gi"),
    ("memory", "2Gi", {"cpu": "0.5", "concurrency": 1}, "128Mi to 1Gi"),
    ("memory", "64Mi", {}, "128Mi to 4Gi"),
    ("ingress", "public", {}, "INGRESS_TRAFFIC_ALL"),
    ("logLevel", "TRACE", {}, "DEBUG, INFO"),
    # The server takes WARNING, but its access lines (INFO) are what the SLOs count.
    ("logLevel", "WARNING", {}, "INFO access line"),
    ("allowUnauthenticated", "yes", {}, "true or false"),
    ("reflection", "1", {}, "true or false"),
    ("deletionProtection", "no", {}, "true or false"),
    ("invokers", "user:a@example.com", {}, "list of strings"),
    ("invokers", ["alice@example.com"], {}, "IAM member"),
    ("invokers", ["allUsers"], {}, "allowUnauthenticated"),
    ("invokers", ["user:a@example.com", "user:a@example.com"], {}, "must not repeat"),
    ("image", "gcr.io/project/catalog:latest", {}, "pinned by digest"),
    ("serviceName", "Catalog", {}, "lowercase"),
    ("serviceName", "a-very-long-service-name", {}, "2 to 21"),
    ("githubRepository", "catalog-grpc", {}, "owner/name"),
    ("ciPoolSuffix", "Pool_1", {}, "lowercase letters or digits"),
    ("invokerIamDisabled", "sure", {}, "true or false"),
    # Both public modes at once, or bindings that the disabled check would ignore: each names both keys.
    ("invokerIamDisabled", True, {"allowUnauthenticated": True}, f"{PROJECT}:allowUnauthenticated = true"),
    ("invokerIamDisabled", True, {"invokers": ["user:a@example.com"]}, f"{PROJECT}:invokers"),
    ("githubRepositoryId", "abc", {}, "integer"),
    ("githubRepositoryOwnerId", "1.5", {}, "integer"),
    ("deployEnvironment", "pro duction", {}, "GitHub environment name"),
]


@pytest.mark.parametrize(
    ("key", "value", "others", "allowed"),
    INVALID,
    ids=[f"{key}={value}" for key, value, _, _ in INVALID],
)
def test_invalid_config_fails_before_any_resource(
    key: str, value: object, others: dict[str, object], allowed: str
) -> None:
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError) as failure:
        run_program(with_config(**others, **{key: value}), monitor=monitor)
    message = str(failure.value)
    assert f"{PROJECT}:{key}" in message
    assert str(value[0] if isinstance(value, list) else value) in message
    assert allowed in message
    assert monitor.declared == []


@pytest.mark.parametrize(
    ("config", "allowed"),
    [
        ({"gcp:region": "us-central1"}, "gcp:project"),
        ({**BASE, "gcp:project": "X"}, "project id"),
        ({**BASE, "gcp:region": "moon"}, "region"),
    ],
)
def test_provider_config_is_checked_too(config: dict[str, object], allowed: str) -> None:
    with pytest.raises(pulumi.RunError, match=re.escape(allowed)):
        run_program(config)


@pytest.mark.parametrize("region", ["us-central9", "europe-west5", "mars-north1"])
def test_home_region_must_be_a_cloud_run_region(region: str) -> None:
    # Shaped like a region, so a pattern lets it through; Cloud Run does not serve from it.
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError) as failure:
        run_program({**BASE, "gcp:region": region}, monitor=monitor)
    message = str(failure.value)
    assert f"invalid config gcp:region = {region!r}" in message
    assert "Cloud Run region" in message
    assert monitor.declared == []


@pytest.mark.parametrize(
    ("cpu", "memory", "concurrency"),
    [
        ("0.08", "512Mi", 1),
        ("0.5", "1Gi", 1),
        ("1", "4Gi", 80),
        ("2", "8Gi", 80),
        ("4", "2Gi", 80),
        ("6", "24Gi", 80),
        ("8", "32Gi", 1000),
        ("1000m", "512Mi", 80),
    ],
)
def test_cloud_run_cpu_memory_pairs_are_accepted(cpu: str, memory: str, concurrency: int) -> None:
    deployment = run_program(with_config(cpu=cpu, memory=memory, concurrency=concurrency))
    resources = deployment.one(SERVICE).inputs["template"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": cpu, "memory": memory}


def test_prebuilt_image_is_deployed_as_is_and_nothing_is_built() -> None:
    deployment = run_program(with_config(image=PREBUILT))
    assert deployment.all(IMAGE) == []
    assert deployment.one(SERVICE).inputs["template"]["containers"][0]["image"] == PREBUILT
    assert deployment.outputs["image"] == PREBUILT


def test_empty_image_builds() -> None:
    # Pulumi.yaml's default "" reaches the program as a value: it means "build", not an invalid image.
    deployment = run_program({**stack_config("dev"), f"{PROJECT}:image": ""})
    assert len(deployment.all(IMAGE)) == 1


def test_each_invoker_gets_the_invoker_role_and_private_means_no_public_binding() -> None:
    invokers = [
        "user:alice@example.com",
        "group:catalog-readers@example.com",
        "serviceAccount:c@p.iam.gserviceaccount.com",
    ]
    deployment = run_program(with_config(allowUnauthenticated=False, invokers=invokers))
    bindings = deployment.all(INVOKER)
    assert sorted(b.inputs["member"] for b in bindings) == sorted(invokers)
    assert {b.inputs["role"] for b in bindings} == {"roles/run.invoker"}


def test_disabled_invoker_check_makes_the_service_public_without_bindings() -> None:
    deployment = run_program(with_config(invokerIamDisabled=True, allowUnauthenticated=False))
    assert deployment.one(SERVICE).inputs["invokerIamDisabled"] is True
    assert deployment.all(INVOKER) == []


def test_invoker_check_stays_on_by_default() -> None:
    assert run_program(BASE).one(SERVICE).inputs["invokerIamDisabled"] is False


def test_public_service_adds_all_users_to_invokers() -> None:
    deployment = run_program(with_config(allowUnauthenticated=True, invokers=["user:alice@example.com"]))
    assert sorted(b.inputs["member"] for b in deployment.all(INVOKER)) == [
        "allUsers",
        "user:alice@example.com",
    ]


# ---- The table: each bound and choice, read the way the program reads it (no resources, so fast) ----

# Key name -> the field it fills.
FIELDS = {
    key.name: field
    for settings in (config.StackConfig, config.ObservabilityConfig)
    for field, key in declared(settings).items()
}
# What another key must hold for a value at this key's bound to be valid (the rules that join keys).
NEEDS: dict[str, dict[str, object]] = {
    "minInstances": {"maxInstances": 1000},
    "latencyThresholdMs": {"requestTimeoutSeconds": 3600},
}


def read(**overrides: object) -> dict[str, Any]:
    """Every field's value as load() and load_observability() give it, with `overrides` set."""
    merged = with_project_config({**BASE, **{f"{PROJECT}:{key}": value for key, value in overrides.items()}})
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack="dev")
    pulumi.runtime.set_all_config({key: wire_value(value) for key, value in merged.items()})
    stack = config.load()
    return {**vars(stack), **vars(config.load_observability(stack))}


def bound_cases() -> list[tuple[Key, int, bool]]:
    """(key, value, accepted) at, just below and just above each bound of each integer key."""
    cases: list[tuple[Key, int, bool]] = []
    for key in config.KEYS:
        if key.type != "integer" or key.low is None or key.high is None:
            continue
        cases += [
            (key, key.low - 1, False),
            (key, key.low, True),
            (key, key.high, True),
            (key, key.high + 1, False),
        ]
        # Between two choices: inside the bounds, not one of them.
        between = [int(choice) + 1 for choice in key.choices[:-1]]
        cases += [(key, value, value in key.choices) for value in between]
    return cases


BOUNDS = bound_cases()


def test_every_integer_key_has_its_bounds_tested() -> None:
    integers = {key.name for key in config.KEYS if key.type == "integer"}
    assert integers == {key.name for key, _, _ in BOUNDS}
    assert len(integers) >= 10


@pytest.mark.parametrize(("key", "value", "accepted"), BOUNDS, ids=[f"{k.name}={v}" for k, v, _ in BOUNDS])
def test_integer_keys_take_exactly_their_bounds(key: Key, value: int, accepted: bool) -> None:
    overrides = {**NEEDS.get(key.name, {}), key.name: value}
    if accepted:
        assert read(**overrides)[FIELDS[key.name]] == value
        return
    with pytest.raises(config.ConfigError) as failure:
        read(**overrides)
    assert failure.value.key == f"{PROJECT}:{key.name}"
    assert f"= {value}: {key.refusal()}" in str(failure.value)


CHOICES = [(key, choice) for key in config.KEYS if key.type == "string" for choice in key.choices]


@pytest.mark.parametrize(("key", "choice"), CHOICES, ids=[f"{k.name}={c}" for k, c in CHOICES])
def test_each_choice_of_a_string_key_is_taken(key: Key, choice: str) -> None:
    value = read(**{key.name: choice})[FIELDS[key.name]]
    # The empty ingress is replaced by the one that suits the stack; every other choice is kept as it is.
    assert value == choice or (choice == "" and value in config.INGRESS_VALUES)


def test_log_level_allows_only_the_levels_the_slos_can_count() -> None:
    assert config.LOG_LEVELS == ("DEBUG", "INFO")
    for level in ("WARNING", "ERROR", "CRITICAL"):
        with pytest.raises(config.ConfigError, match="INFO access line"):
            read(logLevel=level)


def test_the_server_environment_comes_from_the_keys_that_carry_it() -> None:
    stack = read(logLevel="DEBUG", reflection=True)
    loaded = config.StackConfig(**{field: stack[field] for field in declared(config.StackConfig)})
    carried = {key.env: wire_value(stack[FIELDS[key.name]]) for key in config.KEYS if key.env}
    assert loaded.server_env == carried
    assert {"ENABLE_REFLECTION": "true", "LOG_LEVEL": "DEBUG"}.items() <= carried.items()


def test_pulumi_yaml_declares_exactly_the_table_with_its_types_and_defaults_it_accepts() -> None:
    declarations = project_file()["config"]
    project_keys = {key.name: key for key in config.KEYS if ":" not in key.name}
    assert sorted(name for name in declarations if ":" not in name) == sorted(project_keys)
    for name, key in project_keys.items():
        declaration = declarations[name]
        assert declaration["type"] == key.type, name
        if key.type == "array":
            assert declaration["items"] == {"type": key.items}, name
    # Each default is a value its own key takes (the program loads a stack that sets nothing).
    defaults = read()
    assert set(defaults) == set(FIELDS.values())
