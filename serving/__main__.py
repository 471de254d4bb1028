"""`python -m serving ...`: demo run and serving benchmark."""

from serving.cli import app

if __name__ == "__main__":
    app()
