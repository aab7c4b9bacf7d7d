"""What sync would do and how it went: the target study, pending and rejected events, the last sync and error.

Read by ``studyapp doctor``, the TUI and ``studyapp sync`` without loading httpx or the privacy part (the
upload itself lives in studyapp.sync.client, which re-exports these names).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from studyapp.store.outbox import OutboxStore
from studyapp.store.settings import SettingsStore
from studyapp.store.studies import StudyStore
from studyapp.sync import WITHDRAWAL_PENDING_KEY

LAST_SYNC_KEY = "sync.last_sync_at"
LAST_ERROR_KEY = "sync.last_error"
DETAIL_INDENT = " " * 17  # aligns with the values of `studyapp doctor`


@dataclass(frozen=True)
class SyncTarget:
    """The study the next sync talks to the server about."""

    study_id: str
    server_url: str | None
    withdrawal: bool  # a withdrawal waits for the server's confirmation (then nothing is uploaded)


def sync_target(db: Database) -> SyncTarget | None:
    """The study whose withdrawal is owed, else the current study; None when neither exists."""
    pending = SettingsStore(db).get(WITHDRAWAL_PENDING_KEY)
    if pending:
        return SyncTarget(pending["study_id"], pending.get("server_url"), withdrawal=True)
    study = StudyStore(db).current()
    return SyncTarget(study.id, study.server_url, withdrawal=False) if study is not None else None


@dataclass
class SyncStatus:
    study_id: str | None
    waiting_review: int
    ready: int
    withheld: int
    rejected: list[tuple[str, str, str]]  # (event_id, kind, reason)
    last_sync_at: str | None
    last_error: str | None
    withdrawal_pending: bool

    @property
    def pending(self) -> int:
        return self.ready + self.waiting_review

    def __str__(self) -> str:
        if self.study_id is None and not self.withdrawal_pending:
            return "not enrolled in a study"
        parts = [f"{self.ready} ready to send", f"{self.waiting_review} waiting for your review",
                 f"{len(self.rejected)} rejected", f"last sync {self.last_sync_at or 'never'}"]
        if self.withdrawal_pending:
            parts.append("withdrawal waiting for the server's confirmation")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        text = "; ".join(parts)
        # Rejected events with their reasons, indented under the summary (as `studyapp doctor` prints it).
        shown = [f"\n{DETAIL_INDENT}rejected {kind} {event_id}: {reason}"
                 for event_id, kind, reason in self.rejected[:5]]
        more = len(self.rejected) - len(shown)
        return text + "".join(shown) + (f"\n{DETAIL_INDENT}... and {more} more" if more > 0 else "")

    def short(self) -> str:
        """One line for the TUI footer."""
        if self.study_id is None and not self.withdrawal_pending:
            return "not in a study"
        if self.withdrawal_pending:
            return "withdrawal: waiting for the server"
        text = f"{self.pending} to send"
        if self.rejected:
            text += f" · {len(self.rejected)} rejected"
        text += f" · synced {self.last_sync_at[11:16] + ' UTC' if self.last_sync_at else 'never'}"
        if self.last_error:
            text += " · sync failed"
        return text

    def lines(self) -> list[str]:
        """Every rejected event with its reason (the summary shows the first five)."""
        return [f"rejected {kind} {event_id}: {reason}" for event_id, kind, reason in self.rejected]


def sync_status(db: Database) -> SyncStatus:
    """Pending, rejected (with reasons), last sync and last error of the enrolled study."""
    settings = SettingsStore(db)
    study = StudyStore(db).current()
    study_id = study.id if study else None
    outbox = OutboxStore(db)
    counts = outbox.counts(study_id) if study_id else {"pending": 0, "approved": 0, "withheld": 0}
    rejected = ([(e.event_id, e.kind, e.reason or "") for e in outbox.list(status="rejected", study_id=study_id)]
                if study_id else [])
    error = settings.get(LAST_ERROR_KEY)
    return SyncStatus(
        study_id=study_id,
        waiting_review=counts["pending"],
        ready=counts["approved"],
        withheld=counts["withheld"],
        rejected=rejected,
        last_sync_at=settings.get(LAST_SYNC_KEY),
        last_error=error.get("message") if isinstance(error, dict) else None,
        withdrawal_pending=bool(settings.get(WITHDRAWAL_PENDING_KEY)),
    )
