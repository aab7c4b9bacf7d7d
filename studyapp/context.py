"""What every command and the TUI share: the data dir, the open database, the model settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from sqlite_utils import Database

from studyapp import paths, private_files
from studyapp.llm import config as llm_config
from studyapp.store.db import open_database
from studyapp.store.settings import SettingsStore

# A notice waiting to be shown once (see take_notice): the files of an older install were made private.
PRIVATE_FILES_NOTICE_KEY = "private_files.notice"


@dataclass
class AppContext:
    data_dir: Path
    model_override: str | None = None
    base_url_override: str | None = None
    # The chat app turns this off and checks integrity in the background after its first frame.
    check_integrity: bool = True
    # The participant saved a model in the settings screen: their choice wins over the flags and the
    # environment for the rest of the run (choose_model_settings).
    model_chosen: bool = False
    _db: Database | None = field(default=None, repr=False)

    @classmethod
    def create(cls, data_dir: str | Path | None = None, *, model: str | None = None,
               base_url: str | None = None) -> AppContext:
        return cls(paths.data_dir(data_dir), model, base_url)

    @property
    def database_path(self) -> Path:
        return self.data_dir / paths.DATABASE_NAME

    @property
    def db(self) -> Database:
        if self._db is None:
            # Before the connection: chmod by path is safe then and after, but the notice needs the database.
            tightened = private_files.tighten(self.database_path)
            self._db = open_database(self.database_path, check_integrity=self.check_integrity)
            if tightened:
                # Kept until shown: a command that prints nothing leaves it to the next one that does.
                self.settings.set(PRIVATE_FILES_NOTICE_KEY, private_files.notice(tightened))
        return self._db

    def take_notice(self) -> str | None:
        """The pending one-time notice about files made private, forgotten once taken (None if none)."""
        if self._db is None:
            return None
        text = self.settings.get(PRIVATE_FILES_NOTICE_KEY)
        if text is not None:
            self.settings.delete(PRIVATE_FILES_NOTICE_KEY)
        return text

    @cached_property
    def settings(self) -> SettingsStore:
        return SettingsStore(self.db)

    def model_settings(self) -> llm_config.ModelSettings:
        settings = llm_config.resolve(
            self.settings.get(llm_config.SETTINGS_KEY),
            model=self.model_override,
            base_url=self.base_url_override,
            environment=not self.model_chosen,
        )
        if settings.via_study:
            # The participant's token goes only to the server of the study they are enrolled in now, whatever
            # address was saved when the chat took on its model (the server may have moved since, or the
            # participant withdrawn): no server, no address, and the model says the models come with enrollment.
            from studyapp.study.current import current_study
            from studyapp.study.models import study_server

            study = current_study(self.db)
            server = study_server(study) if study.enrolled and study.protocol.id == settings.via_study else None
            settings = replace(settings, base_url=llm_config.gateway_url(server) if server else None)
        return settings

    def model_overridden_by(self) -> list[str]:
        """What wins over the saved model settings in this run (flags, environment variables), if anything."""
        return llm_config.overriding_sources(model=self.model_override, base_url=self.base_url_override,
                                             environment=not self.model_chosen)

    def save_model_settings(self, settings: llm_config.ModelSettings) -> None:
        self.settings.set(llm_config.SETTINGS_KEY, settings.to_dict())

    def choose_model_settings(self, settings: llm_config.ModelSettings) -> list[str]:
        """Save the participant's explicit choice and use it for the rest of the run, over the flags and the
        environment (which win again at the next start). Returns the sources it now wins over."""
        overridden = self.model_overridden_by()
        self.save_model_settings(settings)
        self.model_override = self.base_url_override = None
        self.model_chosen = True
        return overridden

    def close(self) -> None:
        """Close the database and forget everything built on it: a later ``db`` or ``settings`` reopens."""
        # cached_property values live in the instance __dict__; each may hold the connection being closed.
        for name, attr in vars(type(self)).items():
            if isinstance(attr, cached_property):
                self.__dict__.pop(name, None)
        db, self._db = self._db, None
        if db is not None:
            db.close()
