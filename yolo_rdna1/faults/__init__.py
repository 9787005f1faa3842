"""The fault simulator: makes the vendor conv route fail like MIOpen on RDNA1, on any machine.

Set ``YOLO_RDNA1_FAULTS`` to a profile file or a shipped profile name (``gfx1010``); unset, the
simulator is off and costs nothing. Only the vendor route is affected, never the bypass.
"""

from .effects import corrupt, raise_or_block
from .profile import (
    EFFECTS,
    ENV_VAR,
    FaultProfile,
    FaultProfileError,
    FaultRule,
    load_profile,
    parse_profile,
    profile_from_env,
    shipped_profiles,
)

__all__ = [
    "EFFECTS",
    "ENV_VAR",
    "FaultProfile",
    "FaultProfileError",
    "FaultRule",
    "corrupt",
    "load_profile",
    "parse_profile",
    "profile_from_env",
    "raise_or_block",
    "shipped_profiles",
]
