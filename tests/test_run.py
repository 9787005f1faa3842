"""GuardedRun: what it switches on for the training thread, and that it switches it back."""

import threading

import pytest
import torch

from yolo_rdna1.guard import ConvGuard
from yolo_rdna1.options import OptionError, PluginOptions
from yolo_rdna1.run import GuardedRun

multithreading = getattr(torch._C, "_is_multithreading_enabled", None)
pytestmark = pytest.mark.skipif(
    multithreading is None, reason="torch < 2.0 has no autograd multithreading switch; serial_backward is a no-op there"
)


def _run(tmp_path, guard: bool = True, **opts) -> GuardedRun:
    run = GuardedRun(PluginOptions(telemetry=0, thermal=False, stall_timeout=0, **opts), tmp_path, torch.device("cpu"))
    if guard:
        run.guard = ConvGuard(policy="bypass", faults=False)
    return run


def test_serial_backward_holds_for_the_training_thread_only_and_is_restored(tmp_path):
    assert multithreading()
    run = _run(tmp_path)
    run.enter_training()
    assert not multithreading()
    other = []
    t = threading.Thread(target=lambda: other.append(multithreading()))
    t.start()
    t.join()
    assert other == [True]  # a thread-local switch: the data loader's threads keep torch's default
    run.finish()
    assert multithreading()


@pytest.mark.parametrize("guard,serial", [(True, False), (False, True)])
def test_serial_backward_stays_off_when_disabled_or_without_a_guard(tmp_path, guard, serial):
    run = _run(tmp_path, guard=guard, serial_backward=serial)
    run.enter_training()
    assert multithreading()
    run.finish()
    assert multithreading()


def test_serial_backward_must_be_a_bool():
    with pytest.raises(OptionError, match="serial_backward='yes' must be True or False"):
        PluginOptions(serial_backward="yes")
