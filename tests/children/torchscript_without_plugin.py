"""Child program of tests/callbacks/test_lifecycle.py: an exported TorchScript model runs where the
plugin was never imported.

    python tests/children/torchscript_without_plugin.py MODEL_TORCHSCRIPT

Prints four words: the output's type, whether the graph holds Python ops, whether ``yolo_rdna1``
got imported, whether the graph holds an ordinary convolution (``aten::_convolution``).
"""

from __future__ import annotations

import sys

import torch


def main(argv: list[str]) -> int:
    """Loads the model and runs one 192 px forward pass."""
    (path,) = argv
    m = torch.jit.load(path)
    y = m(torch.zeros(1, 3, 192, 192))
    graph = str(m.inlined_graph)
    print(type(y).__name__, "PythonOp" in graph, "yolo_rdna1" in sys.modules, "aten::_convolution" in graph)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
