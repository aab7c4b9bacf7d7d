"""Comparisons, their ratings, relevance labels and judge verdicts: the SQL of the study part.

A comparison row records everything shown (docs/ARCHITECTURE.md sections 4 and 6): the prompt message, both arms'
messages, the side of the personalized arm and the coin that decided it, the attributes offered to the
selector with its yes/no and rationale, model, parameters and template versions. Ratings are stored from
the personalized arm's point of view (export contract: 1 generic much better .. 5 personalized much
better) next to the choice as shown, so both can be checked against each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from studyapp.events import RELEVANCE_STATUSES
from studyapp.store.util import atomic, dumps, loads, new_id, now

STATUSES = ("generating", "shown", "rated", "skipped", "error")
# What became of a comparison neither rated nor skipped (comparisons.end_state, migration m008).
END_STATES = ("failed", "cancelled", "abandoned")


class ComparisonNotFound(LookupError):
    pass


class AlreadyRated(RuntimeError):
    """A comparison gets one rating (or skip); a second one would silently overwrite the first."""


@dataclass
class ComparisonRecord:
    id: str
    conversation_id: str
    prompt_message_id: str
    generic_message_id: str | None
    personalized_message_id: str | None
    personalized_side: str
    coin: dict[str, Any]
    # Every attribute offered to the selector: {"attribute_id", "text", "selected", "rationale"}.
    attributes: list[dict[str, Any]]
    model: str | None
    parameters: dict[str, Any]
    templates: dict[str, Any]
    status: str
    created_at: str
    shown_at: str | None
    prompt: str = ""
    generic_response: str = ""
    personalized_response: str = ""
    # From the ratings row, once rated or skipped.
    rating: int | None = None
    shown_choice: int | None = None
    chosen: str | None = None
    skipped: bool = False
    comment: str | None = None
    time_to_rate_ms: float | None = None
    rated_at: str | None = None
    # Set when it ended without a rating or skip: failed, cancelled or abandoned (m008).
    end_state: str | None = None
    ended_at: str | None = None
    # The history messages both arms were written with, and a sha256 of that transcript (m008; None before).
    context_message_ids: list[str] | None = None
    context_sha256: str | None = None

    @property
    def state(self) -> str | None:
        """rated, skipped, failed, cancelled or abandoned; None while it is still being generated or shown."""
        if self.rated_at is not None:
            return "skipped" if self.skipped else "rated"
        return self.end_state

    @property
    def selected_texts(self) -> list[str]:
        return [a["text"] for a in self.attributes if a.get("selected")]

    def response_on(self, side: str) -> str:
        """The text shown as Response 1 (``left``) or Response 2 (``right``)."""
        personalized = side == self.personalized_side
        return self.personalized_response if personalized else self.generic_response


@dataclass
class RelevanceLabel:
    id: str
    comparison_id: str
    attribute_id: str
    selected_by_model: bool
    model_relevant: bool
    human_relevant: bool | None
    labeled_at: str | None
    # yes / no / not_sure / not_asked, when it was asked, and the chance it was sampled (m008; None before).
    status: str | None = None
    asked_when: str | None = None
    ask_probability: float | None = None


@dataclass
class JudgeVerdict:
    id: str
    comparison_id: str
    judge_model: str
    personalized_side: str
    rating: int | None
    raw: str | None
    template: str | None
    created_at: str
    # The conversation the judge saw: sha256 and length of its transcript (m008; None before).
    context_sha256: str | None = None
    context_chars: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# Neither rated nor skipped nor ended yet: what became of it is still open.
_OPEN = "end_state IS NULL AND NOT EXISTS (SELECT 1 FROM ratings WHERE ratings.comparison_id = comparisons.id)"
# Rated or skipped: both answers were complete and shown, so the judge can compare them. Failed, cancelled and
# abandoned comparisons have no complete pair and are never judged.
_JUDGEABLE = "r.id IS NOT NULL"

_SELECT = """
    SELECT c.*, p.content AS prompt, g.content AS generic_response, z.content AS personalized_response,
           r.rating, r.shown_choice, r.chosen, r.skipped, r.comment, r.time_to_rate_ms, r.rated_at
    FROM comparisons c
    LEFT JOIN messages p ON p.id = c.prompt_message_id
    LEFT JOIN messages g ON g.id = c.generic_message_id
    LEFT JOIN messages z ON z.id = c.personalized_message_id
    LEFT JOIN ratings r ON r.comparison_id = c.id
"""


def _record(row: Mapping[str, Any]) -> ComparisonRecord:
    return ComparisonRecord(
        id=row["id"],
        conversation_id=row["conversation_id"],
        prompt_message_id=row["prompt_message_id"],
        generic_message_id=row["generic_message_id"],
        personalized_message_id=row["personalized_message_id"],
        personalized_side=row["personalized_side"],
        coin=loads(row["coin"], {}),
        attributes=loads(row["selected_attributes"], []),
        model=row["model"],
        parameters=loads(row["parameters"], {}),
        templates=loads(row["templates"], {}),
        status=row["status"],
        created_at=row["created_at"],
        shown_at=row["shown_at"],
        prompt=row["prompt"] or "",
        generic_response=row["generic_response"] or "",
        personalized_response=row["personalized_response"] or "",
        rating=row["rating"],
        shown_choice=row["shown_choice"],
        chosen=row["chosen"],
        skipped=bool(row["skipped"]),
        comment=row["comment"],
        time_to_rate_ms=row["time_to_rate_ms"],
        rated_at=row["rated_at"],
        end_state=row["end_state"],
        ended_at=row["ended_at"],
        context_message_ids=loads(row["context_message_ids"]),
        context_sha256=row["context_sha256"],
    )


class ComparisonStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Comparisons --------------------------------------------------------------------------------

    def create(
        self,
        *,
        conversation_id: str,
        prompt_message_id: str,
        personalized_side: str,
        coin: Mapping[str, Any],
        attributes: Iterable[Mapping[str, Any]],
        model: str | None,
        parameters: Mapping[str, Any],
        templates: Mapping[str, Any],
        context_message_ids: Sequence[str] | None = None,
        context_sha256: str | None = None,
    ) -> str:
        """A new comparison, 'generating'. ``context_message_ids``: the history messages both arms are given,
        in order, and ``context_sha256`` the sha256 of their transcript (studyapp.study.transcript)."""
        if personalized_side not in ("left", "right"):
            raise ValueError(f"personalized_side must be 'left' or 'right', not {personalized_side!r}")
        comparison_id = new_id()
        context = dumps(list(context_message_ids)) if context_message_ids is not None else None
        with atomic(self.db):
            self.db.execute(
                "INSERT INTO comparisons (id, conversation_id, prompt_message_id, personalized_side, coin, "
                "selected_attributes, model, parameters, templates, status, created_at, context_message_ids, "
                "context_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'generating', ?, ?, ?)",
                [comparison_id, conversation_id, prompt_message_id, personalized_side, dumps(dict(coin)),
                 dumps([dict(a) for a in attributes]), model, dumps(dict(parameters)), dumps(dict(templates)),
                 now(), context, context_sha256],
            )
        return comparison_id

    def set_arm_messages(self, comparison_id: str, *, generic_message_id: str, personalized_message_id: str) -> None:
        with atomic(self.db):
            self.db.execute(
                "UPDATE comparisons SET generic_message_id = ?, personalized_message_id = ? WHERE id = ?",
                [generic_message_id, personalized_message_id, comparison_id],
            )

    def set_status(self, comparison_id: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with atomic(self.db):
            self.db.execute("UPDATE comparisons SET status = ? WHERE id = ?", [status, comparison_id])

    def mark_shown(self, comparison_id: str) -> None:
        """Both arms are on screen now (the start of the time to rate)."""
        with atomic(self.db):
            self.db.execute(
                "UPDATE comparisons SET status = 'shown', shown_at = ? WHERE id = ? AND status = 'generating'",
                [now(), comparison_id],
            )

    def end(self, comparison_id: str, state: str) -> bool:
        """It ended without a rating or skip (failed, cancelled, abandoned); returns whether this call ended it.

        Only the first end counts and a rated or skipped comparison never ends: what became of it is decided
        once. Setting end_state queues the comparison as a study record (trigger of migration m008).
        """
        if state not in END_STATES:
            raise ValueError(f"end state must be one of {', '.join(END_STATES)}, not {state!r}")
        with atomic(self.db):
            cursor = self.db.execute(
                f"UPDATE comparisons SET end_state = ?, ended_at = ? WHERE id = ? AND {_OPEN}",
                [state, now(), comparison_id],
            )
        return cursor.rowcount == 1

    def mark_abandoned(self) -> int:
        """Comparisons still generating or shown from an earlier run (the app closed before they were rated) end
        as 'abandoned'; returns how many. Their status stays, so the schedule still counts them as comparisons."""
        with atomic(self.db):
            cursor = self.db.execute(
                f"UPDATE comparisons SET end_state = 'abandoned', ended_at = ? "
                f"WHERE status IN ('generating', 'shown') AND {_OPEN}",
                [now()],
            )
        return cursor.rowcount

    def exists(self, comparison_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM comparisons WHERE id = ?", [comparison_id]).fetchone() is not None

    def get(self, comparison_id: str) -> ComparisonRecord:
        rows = list(self.db.query(_SELECT + " WHERE c.id = ?", [comparison_id]))
        if not rows:
            raise ComparisonNotFound(f"no comparison with id {comparison_id}")
        return _record(rows[0])

    def list(self, *, status: str | None = None, rated_only: bool = False) -> list[ComparisonRecord]:
        where, params = [], []
        if status is not None:
            where.append("c.status = ?")
            params.append(status)
        if rated_only:
            where.append("r.rating IS NOT NULL")
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY c.created_at"
        return [_record(r) for r in self.db.query(sql, params)]

    def unfinished(self) -> list[ComparisonRecord]:
        """Comparisons generated or shown but neither rated nor skipped (e.g. the app closed meanwhile)."""
        return self.list(status="generating") + self.list(status="shown")

    def count_waiting_for_rating(self) -> int:
        """Comparisons on screen that the participant has neither rated nor skipped yet (reminders)."""
        return self.db.execute(f"SELECT count(*) FROM comparisons WHERE status = 'shown' AND {_OPEN}").fetchone()[0]

    # Schedule facts -----------------------------------------------------------------------------

    def count_since(self, since: str) -> int:
        """Comparisons started at or after ``since`` (UTC ISO): for the daily cap."""
        return self.db.execute(
            "SELECT count(*) FROM comparisons WHERE created_at >= ? AND status != 'error'", [since]
        ).fetchone()[0]

    def user_turns_since_last(self, *, before_n: int | None = None) -> int | None:
        """User messages after the latest comparison's prompt, in any conversation (None: no comparison yet).

        ``before_n`` leaves out messages from that one on (the participant's new message, already stored),
        so the count is the ordinary turns in between.
        """
        row = self.db.execute(
            "SELECT m.n FROM comparisons c JOIN messages m ON m.id = c.prompt_message_id "
            "WHERE c.status != 'error' ORDER BY m.n DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        sql = "SELECT count(*) FROM messages WHERE role = 'user' AND n > ?"
        params: list[Any] = [row[0]]
        if before_n is not None:
            sql += " AND n < ?"
            params.append(before_n)
        return self.db.execute(sql, params).fetchone()[0]

    # Ratings ------------------------------------------------------------------------------------

    def record_rating(
        self,
        comparison_id: str,
        *,
        rating: int | None,
        shown_choice: int | None,
        chosen_arm: str | None,
        chosen_message_id: str | None,
        skipped: bool,
        comment: str | None,
        time_to_rate_ms: float | None,
        relevance: Iterable[Mapping[str, Any]] = (),
    ) -> str:
        """Store a rating (or skip), its relevance labels and the arm that continues the thread, in one transaction.

        ``relevance`` rows, one per sampled question: attribute_id, selected_by_model, model_relevant, status
        (yes / no / not_sure / not_asked), asked_when (None when not asked) and ask_probability. human_relevant
        follows from the status (None unless yes or no); labeled_at is set only for an answered question.
        """
        if rating is not None and not 1 <= rating <= 5:
            raise ValueError(f"rating must be 1..5, not {rating}")
        if chosen_arm is not None and chosen_arm not in ("generic", "personalized"):
            raise ValueError(f"chosen arm must be 'generic' or 'personalized', not {chosen_arm!r}")
        rating_id = new_id()
        ts = now()
        # atomic, not ``with self.db.conn``: sqlite-utils commits each write at once unless a transaction is open.
        with atomic(self.db):
            existing = self.db.execute("SELECT id FROM ratings WHERE comparison_id = ?", [comparison_id]).fetchone()
            if existing is not None:
                raise AlreadyRated(f"comparison {comparison_id} is already rated")
            self.db.execute(
                "INSERT INTO ratings (id, comparison_id, rating, shown_choice, chosen, skipped, comment, "
                "time_to_rate_ms, rated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [rating_id, comparison_id, rating, shown_choice, chosen_arm, int(skipped), comment,
                 time_to_rate_ms, ts],
            )
            for label in relevance:
                self._insert_relevance(comparison_id, label, ts)
            self.db.execute(
                "UPDATE comparisons SET status = ? WHERE id = ?", ["skipped" if skipped else "rated", comparison_id]
            )
            # The arm that continues the conversation joins the thread in the same transaction,
            # so a crash never leaves a rated comparison without its reply in the conversation.
            if chosen_message_id is not None:
                self.db.execute("UPDATE messages SET in_thread = 1 WHERE id = ?", [chosen_message_id])
        return rating_id

    def _insert_relevance(self, comparison_id: str, label: Mapping[str, Any], rated_at: str) -> None:
        status = label["status"]
        if status not in RELEVANCE_STATUSES:
            raise ValueError(f"relevance status must be one of {', '.join(RELEVANCE_STATUSES)}, not {status!r}")
        # human_relevant keeps its meaning for older readers: the participant's yes or no, else None.
        human = {"yes": True, "no": False}.get(status)
        self.db.execute(
            "INSERT INTO relevance_labels (id, comparison_id, attribute_id, selected_by_model, model_relevant, "
            "human_relevant, labeled_at, status, asked_when, ask_probability) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [new_id(), comparison_id, label["attribute_id"], int(bool(label["selected_by_model"])),
             int(bool(label["model_relevant"])), None if human is None else int(human),
             rated_at if status != "not_asked" else None, status, label["asked_when"],
             label["ask_probability"]],
        )

    def relevance_labels(self, comparison_id: str) -> list[RelevanceLabel]:
        rows = self.db.query(
            "SELECT * FROM relevance_labels WHERE comparison_id = ? ORDER BY rowid", [comparison_id]
        )
        return [
            RelevanceLabel(
                id=r["id"], comparison_id=r["comparison_id"], attribute_id=r["attribute_id"],
                selected_by_model=bool(r["selected_by_model"]), model_relevant=bool(r["model_relevant"]),
                human_relevant=None if r["human_relevant"] is None else bool(r["human_relevant"]),
                labeled_at=r["labeled_at"], status=r["status"], asked_when=r["asked_when"],
                ask_probability=r["ask_probability"],
            )
            for r in rows
        ]

    # Judge verdicts -----------------------------------------------------------------------------

    def add_verdict(
        self,
        comparison_id: str,
        *,
        judge_model: str,
        personalized_side: str,
        rating: int | None,
        raw: str | None,
        template: str | None,
        context_sha256: str | None = None,
        context_chars: int | None = None,
    ) -> str:
        """A judge's verdict on one order (rating None: unreadable), with the sha256 and length of the
        conversation transcript the judge was shown."""
        if rating is not None and not 1 <= rating <= 5:
            raise ValueError(f"rating must be 1..5 or None, not {rating}")
        verdict_id = new_id()
        with atomic(self.db):
            self.db.execute(
                "INSERT INTO judge_verdicts (id, comparison_id, judge_model, personalized_side, rating, raw, "
                "template, created_at, context_sha256, context_chars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [verdict_id, comparison_id, judge_model, personalized_side, rating, raw, template, now(),
                 context_sha256, context_chars],
            )
        return verdict_id

    def verdicts(self, comparison_id: str | None = None, *, judge_model: str | None = None) -> list[JudgeVerdict]:
        where, params = [], []
        if comparison_id is not None:
            where.append("comparison_id = ?")
            params.append(comparison_id)
        if judge_model is not None:
            where.append("judge_model = ?")
            params.append(judge_model)
        sql = "SELECT * FROM judge_verdicts" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self.db.query(sql + " ORDER BY created_at, rowid", params)
        return [JudgeVerdict(**{k: r[k] for k in JudgeVerdict.__dataclass_fields__ if k != "extra"}) for r in rows]

    def judgeable(self) -> list[ComparisonRecord]:
        """Rated and skipped comparisons: both answers exist (a skipped pair is judged too)."""
        return [_record(r) for r in self.db.query(_SELECT + f" WHERE {_JUDGEABLE} ORDER BY c.created_at")]

    def unjudged(self, judge_model: str) -> list[ComparisonRecord]:
        """Rated and skipped comparisons without any verdict from ``judge_model`` yet (background judging)."""
        sql = _SELECT + (
            f" WHERE {_JUDGEABLE} AND NOT EXISTS (SELECT 1 FROM judge_verdicts v "
            "WHERE v.comparison_id = c.id AND v.judge_model = ?) ORDER BY c.created_at"
        )
        return [_record(r) for r in self.db.query(sql, [judge_model])]

    def get_verdict(self, verdict_id: str) -> JudgeVerdict | None:
        rows = list(self.db.query("SELECT * FROM judge_verdicts WHERE id = ?", [verdict_id]))
        if not rows:
            return None
        return JudgeVerdict(**{k: rows[0][k] for k in JudgeVerdict.__dataclass_fields__ if k != "extra"})
