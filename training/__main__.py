"""`python -m training ...` entry point."""

from training.cli import app

if __name__ == "__main__":
    app()
