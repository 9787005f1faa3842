"""Child program of tests/supervision/test_supervisor_edges.py: the real supervised training child
(``yolo_rdna1.supervision.child``) around a training that only waits.

    FAKE_OUT=DIR python tests/children/supervised_sleeper.py -m yolo_rdna1.supervision.child ARGS...

A wrapper script the supervisor runs as its interpreter execs it. The training leaves a conv in
flight in the run's crash trail (as a training killed mid-conv would), writes its pid to
``DIR/pid`` (atomically) and sleeps; a SIGTERM writes ``DIR/terminated`` and ends it by SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

KEY = "v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x48:float32:nchw:fwd"


def sleeping_train(**kwargs: object) -> None:
    from yolo_rdna1.runfiles import breadcrumb_stem
    from yolo_rdna1.verdicts.breadcrumb import Breadcrumb

    out = Path(os.environ["FAKE_OUT"])

    def terminated(signum: int, frame: object) -> None:
        (out / "terminated").write_text("yes")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, terminated)
    crumb = Breadcrumb(breadcrumb_stem(Path(str(kwargs["project"])) / str(kwargs["name"])))
    crumb.enter(crumb.register(KEY))
    (out / "pid.tmp").write_text(str(os.getpid()))
    os.replace(out / "pid.tmp", out / "pid")
    time.sleep(300)


def main(argv: list[str]) -> int:
    if argv[:2] != ["-m", "yolo_rdna1.supervision.child"]:
        raise SystemExit(f"not the supervisor's child command line: {argv}")
    import yolo_rdna1.training
    from yolo_rdna1.supervision import child

    yolo_rdna1.training.train = sleeping_train
    return child.main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
