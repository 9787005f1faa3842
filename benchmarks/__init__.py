"""Benchmarks of yolo_rdna1; run each as a module from the repository root (benchmarks/README.md)."""
