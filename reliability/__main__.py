"""`python -m reliability [--only GROUP ...]` (`make reliability`, `make audit-deps`)."""

from reliability.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
