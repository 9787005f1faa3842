"""A child process that ends when its parent is gone.

The probe child and the supervised training child both run work that must not outlive the
process that started them: a probe stuck in a hung conv, or a training that a later
``resume=True`` would start a second time in the same run folder. A daemon thread polls
``os.getppid()``; when the parent dies the child is re-parented (to init or a subreaper) and the
thread calls ``on_gone``. Polling works wherever ``getppid`` does, unlike Linux's
``PR_SET_PDEATHSIG``, which also fires when only the parent's *thread* that forked ends.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable


def _exit_now() -> None:
    os._exit(0)


def watch_parent(
    on_gone: Callable[[], None] = _exit_now, parent: int | None = None, poll_s: float = 1.0
) -> threading.Thread:
    """Call ``on_gone`` (default: exit at once with status 0) in a daemon thread once the parent is gone.

    ``parent``: the pid the parent passed down; a child whose parent died before this call is
    then ended too (``os.getppid()`` at this call would already name the new parent). Without it,
    the parent is the one this process has now.
    """
    expected = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(poll_s)
        on_gone()

    thread = threading.Thread(target=watch, name="yolo_rdna1-parent-watch", daemon=True)
    thread.start()
    return thread
