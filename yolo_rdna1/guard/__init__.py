"""The conv guard: one router that every convolution of a model passes through."""

from ..route import Route, RouteTable
from .router import POLICIES, ConvGuard, GuardConfigError
from .routes import BYPASS, VENDOR, SignatureRoute, is_vendor_error
from .switch import current, disable, enable, guarded, is_patched

__all__ = [
    "BYPASS",
    "POLICIES",
    "VENDOR",
    "ConvGuard",
    "GuardConfigError",
    "Route",
    "RouteTable",
    "SignatureRoute",
    "current",
    "disable",
    "enable",
    "guarded",
    "is_patched",
    "is_vendor_error",
]
