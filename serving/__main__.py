"""`python -m serving ...`: demo run, outcome export, audit replay."""

from serving.cli import app

if __name__ == "__main__":
    app()
