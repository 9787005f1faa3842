"""One guarded process: its routing plan, the services beside it, its counts (see :mod:`.guarded`)."""

from ..runfiles import breadcrumb_stem
from .counters import RunCounters, reduce_counts
from .guarded import GuardedRun
from .plan import RoutingPlan, trail_env
from .services import RunServices

__all__ = ["GuardedRun", "RoutingPlan", "RunCounters", "RunServices", "breadcrumb_stem", "reduce_counts", "trail_env"]
