"""What measures the product's speed, not the product: serving, data and training benchmarks.

`python -m benchmarks.serve`, `python -m benchmarks.data`, `python -m benchmarks.train`
(`make bench-serve`, `make bench-data`, `make bench-train`); figures in docs/benchmarks.md.
"""
