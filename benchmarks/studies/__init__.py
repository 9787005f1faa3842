"""One-off investigations (the lent hosts' speed spells, pinning, where the bypass's time goes):
kept runnable because docs/benchmarks.md quotes them, not part of the product's figures."""
