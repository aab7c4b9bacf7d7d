"""``python -m studyapp``: the same as the ``studyapp`` command."""

from studyapp.cli import cli

if __name__ == "__main__":
    cli()
