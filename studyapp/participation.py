"""Am I in a study, and what is being sent: the one place that knows (Textual-free).

    participation = Participation(db, database_path)
    participation.state                  # ParticipationState, derived here and nowhere else
    await participation.enroll(url, code)
    participation.consented(record)      # after the consent screen (queues earlier records if chosen)
    await participation.withdraw()
    await participation.run_sync(on_round)   # background sync and protocol refresh, in every state but
                                             # "not enrolled" (a pending withdrawal is retried until confirmed)
    participation.records_written()      # wake the privacy gate (studyapp.privacy.pump)

States: *not enrolled* (the built-in local study; nothing leaves the machine), *enrolled*, *consent needed*
(the study's current consent document has no answer yet: nothing is collected), *withdrawal pending* (withdrawn
here, the server has not confirmed the deletion yet), *protocol unusable* (the stored protocol no longer
validates: still enrolled, nothing collected, a valid one is asked for at every sync). Collection (consent,
anonymization, the outbox) is live only while enrolled with a usable protocol; the database notes every study
record in the meantime (store/collect_queue.py), so nothing is lost while it is not.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from studyapp.store.settings import SettingsStore
from studyapp.study.current import CurrentStudy, current_study
from studyapp.sync import WITHDRAWAL_PENDING_KEY

if TYPE_CHECKING:
    from studyapp.privacy.consent import ConsentRecord
    from studyapp.privacy.pump import RecordPump
    from studyapp.privacy.services import PrivacyServices
    from studyapp.sync.background import BackgroundSync, SyncRound
    from studyapp.sync.enroll import Enrollment
    from studyapp.sync.server_client import RetryPolicy
    from studyapp.sync.withdraw import WithdrawalResult

# The privacy part (Presidio, spaCy) and sync load only when the install takes part in a study.


class ParticipationState(enum.StrEnum):
    NOT_ENROLLED = "not enrolled"
    ENROLLED = "enrolled"
    CONSENT_NEEDED = "consent needed"
    WITHDRAWAL_PENDING = "withdrawal pending"
    PROTOCOL_UNUSABLE = "protocol unusable"


def withdrawal_pending(db: Database) -> bool:
    return bool(SettingsStore(db).get(WITHDRAWAL_PENDING_KEY))


class Participation:
    def __init__(self, db: Database, database_path: Path, *, policy: RetryPolicy | None = None) -> None:
        self.db = db
        self.database_path = database_path
        # How requests to the study server are retried (None: each call's own default).
        self.policy = policy
        self.study: CurrentStudy = current_study(db)
        self.privacy: PrivacyServices | None = None
        self.records: RecordPump | None = None
        self.sync: BackgroundSync | None = None
        self.sync_line = ""
        self._start_collection()

    # State ---------------------------------------------------------------------------------------

    @property
    def state(self) -> ParticipationState:
        if self.study.enrolled:
            if not self.study.usable:
                return ParticipationState.PROTOCOL_UNUSABLE
            return ParticipationState.CONSENT_NEEDED if self.needs_consent() else ParticipationState.ENROLLED
        if withdrawal_pending(self.db):
            return ParticipationState.WITHDRAWAL_PENDING
        return ParticipationState.NOT_ENROLLED

    @property
    def enrolled(self) -> bool:
        return self.study.enrolled

    @property
    def problem(self) -> str | None:
        """Why the enrolled study's protocol cannot be used (None when it can, or when not enrolled)."""
        return self.study.problem

    @property
    def syncs(self) -> bool:
        """Whether background sync runs: in every state but "not enrolled"."""
        return self.state is not ParticipationState.NOT_ENROLLED

    def needs_consent(self) -> bool:
        if self.privacy is None:
            return False
        protocol = self.study.protocol
        return self.privacy.consent.current(protocol.id) is None or self.privacy.consent.needs_reconsent(protocol)

    def status_line(self) -> str | None:
        """What the status line says about taking part (None: nothing to say beyond the study's own line)."""
        state = self.state
        if state is ParticipationState.WITHDRAWAL_PENDING:
            return "Sync: " + (self.sync_line or "withdrawal: waiting for the server")
        if state is ParticipationState.CONSENT_NEEDED:
            return "Consent needed: nothing is collected until you answer (palette: Study consent)"
        if self.enrolled and self.sync_line:
            return f"Sync: {self.sync_line}"
        return None

    # Collection ----------------------------------------------------------------------------------

    def _start_collection(self) -> None:
        """Consent, anonymization and the outbox are live only while enrolled with a usable protocol."""
        if self.records is not None:
            self.records.close()
        self.privacy, self.records = None, None
        if self.study.enrolled and self.study.usable:
            from studyapp.privacy.pump import RecordPump
            from studyapp.privacy.services import PrivacyServices

            self.privacy = PrivacyServices.create(self.db, self.study.protocol)
            self.records = RecordPump(self.database_path, self.study.protocol)
            self.records.load_anonymizer()  # in the pump's worker: the first record need not wait for spaCy

    def reload(self) -> None:
        """After enrollment, withdrawal or a new protocol: the study in force changes, and with it collection."""
        self.study = current_study(self.db)
        self._start_collection()

    def records_written(self) -> None:
        """Study records were committed: wake the privacy gate (the database noted them for it already)."""
        if self.records is not None:
            self.records.wake()

    async def flush(self) -> None:
        """Wait (off the event loop) until every record so far is queued or refused."""
        if self.records is not None:
            await asyncio.to_thread(self.records.flush)

    def consented(self, record: ConsentRecord | None) -> None:
        """The participant answered the consent screen: queue earlier records if they chose to include them."""
        if record is not None and self.records is not None:
            self.records.after_consent(record)
        self.nudge_sync()

    # Enrolling, withdrawing, syncing -------------------------------------------------------------

    async def enroll(self, url: str, code: str, *, store_token_in_file: bool = False) -> Enrollment:
        """``store_token_in_file``: the participant chose a private file over the keyring (studyapp.secrets)."""
        from studyapp.sync.enroll import enroll

        enrollment = await enroll(self.db, url, code, store_in_file=store_token_in_file, policy=self.policy)
        self.reload()
        return enrollment

    async def withdraw(self) -> WithdrawalResult:
        """Withdraw here at once, then ask the server to delete everything; raises SyncError when it could not
        be told (the request is then retried by background sync until it is confirmed)."""
        from studyapp.sync.withdraw import withdraw

        if self.sync is not None:
            self.sync.stop()
        try:
            return await withdraw(self.db, policy=self.policy)
        finally:
            self.reload()

    async def run_sync(self, on_round: Callable[[SyncRound], Any] | None = None) -> None:
        """Background sync until stopped: uploads, protocol refresh (a new one is taken on at once), and a
        pending withdrawal. Returns at once when not taking part."""
        from studyapp.sync.background import BackgroundSync

        if not self.syncs:
            return

        def round_done(round_: SyncRound) -> None:
            self.sync_line = round_.status.short()
            if round_.protocol_changed:
                self.reload()
            if on_round is not None:
                on_round(round_)

        self.sync = BackgroundSync(self.db, on_status=round_done, policy=self.policy)
        try:
            await self.sync.run()
        finally:
            self.sync = None

    def nudge_sync(self) -> None:
        if self.sync is not None:
            self.sync.nudge()

    async def aclose(self) -> None:
        if self.sync is not None:
            self.sync.stop()
        if self.records is not None:
            # Every record handed in reaches the outbox before the app exits; waiting happens off the loop.
            await asyncio.to_thread(self.records.close)
            self.records = None
