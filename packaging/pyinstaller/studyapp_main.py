"""Entry point of the PyInstaller bundle: the same ``studyapp`` command the wheel installs."""

from studyapp.cli import cli

if __name__ == "__main__":
    cli()
