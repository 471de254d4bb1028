"""What checks the product under faults, not the product: crash, broken dependencies, hostile
input, contract fuzzing, load, dependency audit and adversarial training input.

`python -m reliability` (`make reliability`) runs every group and prints one table; see
docs/reliability.md. Nothing in features/, models/, training/ or serving/ imports this package.
"""
