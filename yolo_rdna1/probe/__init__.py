"""Isolated probes: which conv signatures a training uses, and what each does on the vendor route."""

from .discovery import DiscoveryError, discover
from .envprofiles import EnvProfile, EnvProfileError, load_env_profile, shipped_env_profiles
from .runner import Prober, ProbeResult, Timeouts

__all__ = [
    "DiscoveryError",
    "EnvProfile",
    "EnvProfileError",
    "ProbeResult",
    "Prober",
    "Timeouts",
    "discover",
    "load_env_profile",
    "shipped_env_profiles",
]
