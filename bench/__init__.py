"""Benchmarks (`make bench` / `python -m bench.run [--quick] [--only NAME]`).

Each benchmark module has ``run(quick: bool) -> dict`` and ``plot(result, path)``; results
go to bench/results/<name>.json and .png, plus bench/results/summary.md. Speed and memory
are measured here, never asserted in timed tests (DESIGN.md section 10).
"""
