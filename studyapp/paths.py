"""Where studyapp keeps its files.

platformdirs gives the per-user data directory; ``--data-dir`` or ``STUDYAPP_DATA_DIR`` overrides it
(the flag wins over the variable), so tests, studies and several installs can live side by side.
The command line resolves its flags in studyapp.cli_options and passes the winner here as ``override``.

The config dir (platformdirs' user config dir, or ``STUDYAPP_CONFIG_DIR``) holds only what lives outside the
data dir on purpose: the secrets a participant chose to keep in a file (studyapp.secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from studyapp.private_files import make_private_dir

APP_NAME = "studyapp"
ENV_DATA_DIR = "STUDYAPP_DATA_DIR"
ENV_CONFIG_DIR = "STUDYAPP_CONFIG_DIR"
DATABASE_NAME = "studyapp.db"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data directory, created private (0700) if missing."""
    if override:
        path = Path(override)
    elif os.environ.get(ENV_DATA_DIR):
        path = Path(os.environ[ENV_DATA_DIR])
    else:
        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path = path.expanduser()
    make_private_dir(path)
    return path


def database_path(override: str | os.PathLike[str] | None = None) -> Path:
    return data_dir(override) / DATABASE_NAME


def config_dir() -> Path:
    """The per-user config dir (not created here: only a secret stored in a file needs it)."""
    if os.environ.get(ENV_CONFIG_DIR):
        return Path(os.environ[ENV_CONFIG_DIR]).expanduser()
    config = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    if config == Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)):
        # macOS and Windows give both the same folder: the config (the secrets file) goes beside it instead, so a
        # copy of the data dir never carries a secret.
        return config.with_name(f"{APP_NAME}-config")
    return config
