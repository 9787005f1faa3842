"""What a firing fault rule does to a vendor conv call: the four ways MIOpen fails on RDNA1."""

from __future__ import annotations

import os
import signal
import sys
import threading

import torch

from .profile import FaultRule


def raise_or_block(rule: FaultRule) -> None:
    """Effects that replace the call: ``error`` raises, ``hang`` never returns, ``abort`` kills.

    A hang blocks every signal in the calling thread and waits on a lock nobody releases: a
    Python-level handler (SIGINT's KeyboardInterrupt, a SIGALRM timeout) never runs in this
    thread, just as a thread stuck on a KFD queue never returns to Python. Other threads keep
    running, and SIGKILL (or ``os._exit`` from a watchdog thread) ends the process, which is
    what a real hang leaves you with.
    """
    if rule.effect == "error":
        raise RuntimeError(f"{rule.message} (simulated by YOLO_RDNA1_FAULTS, rule {rule.index + 1})")
    if rule.effect == "hang":
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        never = threading.Lock()
        never.acquire()
        while True:
            never.acquire()
    if rule.effect == "abort":
        sys.stdout.flush()
        sys.stderr.write(f"Memory access fault by GPU node-1 (simulated by YOLO_RDNA1_FAULTS, rule {rule.index + 1})\n")
        sys.stderr.flush()
        os.abort()


def corrupt(rule: FaultRule, out: torch.Tensor) -> torch.Tensor:
    """Effects that return a result of the right shape with bad values (``nan``, ``wrong``)."""
    if rule.effect == "nan":
        return torch.full_like(out, float("nan"))
    if rule.effect == "wrong":
        # Mirrored along the last dim and scaled: off by far more than 1e-2 for any non-trivial
        # tensor, finite, and deterministic so probes see the same wrong answer twice.
        return out.flip(-1) * 1.5 + 0.25
    return out
