"""The pack Pulumi runs (`--policy-pack policy`): every catalog policy, mandatory unless it says otherwise."""

from catalog_policy import PACK_NAME, POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, policies=list(POLICIES), enforcement_level=EnforcementLevel.MANDATORY)
