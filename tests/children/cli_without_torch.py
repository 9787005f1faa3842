"""Child program of tests/test_cli_errors.py: ``yolo-rdna1`` commands that must not import torch.

    python tests/children/cli_without_torch.py COMMANDS_JSON

Runs ``main(argv)`` for each argv of the JSON list, in one process, then prints one JSON line:
``{"codes": [exit codes], "torch": imported?, "ultralytics": imported?}``.
"""

from __future__ import annotations

import json
import sys

from yolo_rdna1.cli import main as cli


def main(argv: list[str]) -> int:
    """0 once every command ran (their own exit codes are in the printed line)."""
    (commands,) = argv
    codes = [cli(a) for a in json.loads(commands)]
    print(json.dumps({"codes": codes, "torch": "torch" in sys.modules, "ultralytics": "ultralytics" in sys.modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
