"""The pack's per-stack settings: each policy's config (`--policy-pack-config FILE`, docs/policy.md)."""

from __future__ import annotations

from pulumi_policy import PolicyConfigSchema, ResourceValidationArgs

# Unconfigured, the pack treats a stack as production and private: the strict reading is the safe one, and
# a stack that may be public or unprotected (dev) says so in its own config file.
PRODUCTION = "production"
ALLOW_PUBLIC = "allowPublicInvoker"

PRODUCTION_SCHEMA = PolicyConfigSchema(
    properties={
        PRODUCTION: {
            "type": "boolean",
            "default": True,
            "description": "Whether the stack is production (false for dev and other disposable stacks).",
        }
    }
)
ALLOW_PUBLIC_SCHEMA = PolicyConfigSchema(
    properties={
        ALLOW_PUBLIC: {
            "type": "boolean",
            "default": False,
            "description": "Let anyone call the stack's Cloud Run services (allUsers, invokerIamDisabled).",
        }
    }
)


def flag(args: ResourceValidationArgs, key: str, default: bool) -> bool:
    """A boolean setting of the policy being run; anything but true or false is an error naming the key."""
    value = args.get_config().get(key, default)
    if not isinstance(value, bool):
        raise TypeError(f"policy config {key} must be true or false, not {value!r}")
    return value
