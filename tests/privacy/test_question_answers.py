"""Answers to the study's own questions on their way out: only under the question_answers consent, free text
anonymized on the device, shown in the upload review with the question, and stored and exported by the server."""

from __future__ import annotations

import random
from datetime import timedelta, timezone
from pathlib import Path

from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.intake import drain
from studyapp.privacy.review import ReviewService, summary
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore
from studyapp.study.asking import Answer, Asking
from studyapp.study.current import current_study, save_enrollment
from studyapp.study.protocol import parse_protocol
from tests.privacy.test_intake import pump_and_sync
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.sync.helpers import enroll_and_consent

RAW = "Ask Maria Lopez, she knows what I like."
WEST = timezone(timedelta(hours=-3))


class Draws(random.Random):
    """The experience-sampling draws, given in order."""

    def __init__(self, *draws: float) -> None:
        super().__init__()
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def rated_comparison(db: Database) -> str:
    from tests.study.test_asking import rated_comparison as make

    return make(db)


async def test_answers_reach_the_export_anonymized(live: LiveServer, tmp_path: Path,
                                                   memory_keyring: MemoryKeyring) -> None:
    import pyarrow.parquet as pq

    from studyapp.server.export import export

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    comparison_id = rated_comparison(db)
    asking = Asking(db, current_study(db), tz=WEST, rng=Draws(0.0))
    choice, text = asking.after_comparison(comparison_id)
    asking.record(Answer(choice, "answered", option="Neither"))
    asking.record(Answer(text, "answered", text=RAW))
    [turn] = asking.after_turn("m1")
    asking.record(Answer(turn, "skipped"))
    await pump_and_sync(db, path)

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    rows = {r["question_id"]: r for r in pq.read_table(tmp_path / "out" / "question_answers.parquet").to_pylist()}
    assert set(rows) == {"felt_understood", "what_was_assumed", "written_for_you"}
    sent = rows["what_was_assumed"]["answer_text"]
    assert "Maria" not in sent and "Lopez" not in sent and "<PERSON_1>" in sent
    assert '"PERSON"' in rows["what_was_assumed"]["replaced_entities"]
    assert rows["felt_understood"]["answer_option"] == "Neither"
    assert rows["felt_understood"]["comparison_id"] == comparison_id
    assert (rows["written_for_you"]["status"], rows["written_for_you"]["ask_probability"]) == ("skipped", 0.5)
    assert rows["written_for_you"]["message_id"] == "m1" and rows["written_for_you"]["answer_number"] is None
    # Asked in the participant's time zone (UTC-03:00), on the first day of the study.
    assert rows["felt_understood"]["asked_at"].endswith("-03:00")
    assert rows["felt_understood"]["utc_offset_min"] == -180 and rows["felt_understood"]["study_day"] == 1


PROTOCOL = '''
[study]
id = "questions"
title = "Questions"
version = "1"
duration_days = 7

[[consent]]
version = "1"
title = "Consent"
text = "You agree."

[categories.ratings]
required = true

[categories.question_answers]
required = false

[privacy]
review_uploads = true

[comparisons]
min_turns_between = 0
daily_cap = 5
probability = 0.5
min_attributes = 0

[[questions]]
id = "kept_up"
text = "How well did the assistant keep up with you?"
type = "likert"
points = 5
labels = ["Not at all", "Badly", "Somewhat", "Well", "Perfectly"]
when = "after_turn"
probability = 1.0
daily_cap = 5

[[questions]]
id = "anything_else"
text = "Anything else about how the assistant understood you?"
type = "text"
when = "after_turn"
probability = 1.0
daily_cap = 5
'''


def test_answers_are_collected_only_under_their_consent(db: Database, consent: ConsentService,
                                                         anonymizer: Anonymizer) -> None:
    protocol = parse_protocol(PROTOCOL)
    save_enrollment(db, protocol, participant_id="p1")
    consent.grant(protocol, ["ratings", "question_answers"])
    asking = Asking(db, current_study(db), rng=Draws(0.9))  # falls on the second question (chances 0.5, 0.5)
    [ask] = asking.after_turn("m1")
    assert ask.question.id == "anything_else"
    asking.record(Answer(ask, "answered", text=RAW))
    # The participant gives up the category before the gate ran: the answer stays on this computer.
    consent.change_categories(protocol, ["ratings"])
    collector = Collector(db, protocol, anonymizer, consent)
    assert drain(collector) == (0, 1)
    assert [e.kind for e in OutboxStore(db).list()] == ["consent", "consent"]
    assert asking.after_turn("m2") == []  # and nothing more is asked


def test_the_review_shows_the_question_and_the_anonymized_answer(db: Database, consent: ConsentService,
                                                                 anonymizer: Anonymizer) -> None:
    protocol = parse_protocol(PROTOCOL)
    save_enrollment(db, protocol, participant_id="p1")
    consent.grant(protocol, ["ratings", "question_answers"])
    asking = Asking(db, current_study(db), rng=Draws(0.1, 0.9, 0.9))
    [likert] = asking.after_turn("m1")
    [text] = asking.after_turn("m2")
    [skipped] = asking.after_turn("m3")
    asking.record(Answer(likert, "answered", number=4))
    asking.record(Answer(text, "answered", text=RAW))
    asking.record(Answer(skipped, "skipped"))
    assert drain(Collector(db, protocol, anonymizer, consent)) == (3, 0)

    review = ReviewService(db, protocol, anonymizer)
    by_answer = {e.payload["answer_id"]: e for e in review.pending() if e.kind == "question_answer"}
    assert len(by_answer) == 3 and {e.status for e in by_answer.values()} == {"pending"}
    seen = review.as_seen(by_answer[likert.ask_id])
    assert seen == ("The study asked: “How well did the assistant keep up with you?”\n"
                    "Your answer: 4 of 5, “Well”")
    event = by_answer[text.ask_id]
    seen = review.as_seen(event)
    assert seen is not None and "Anything else about how the assistant understood you?" in seen
    assert "Maria" not in seen and "<PERSON_1>" in seen
    assert "Maria" not in summary(event) and summary(event).startswith("Ask <PERSON_1>")
    assert [f.values for f in review.found(event)] == [("maria lopez",)]  # what it stands for, on screen only
    assert review.as_seen(by_answer[skipped.ask_id]).endswith("You skipped this question.")  # type: ignore[union-attr]
    assert summary(by_answer[skipped.ask_id]) == "anything_else: skipped"


def test_the_review_shows_an_answer_in_the_wording_it_was_given_after_the_question_changed(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    protocol = parse_protocol(PROTOCOL)
    save_enrollment(db, protocol, participant_id="p1")
    consent.grant(protocol, ["ratings", "question_answers"])
    asking = Asking(db, current_study(db), rng=Draws(0.1))
    [likert] = asking.after_turn("m1")
    asking.record(Answer(likert, "answered", number=5))
    assert drain(Collector(db, protocol, anonymizer, consent)) == (1, 0)
    # Before the upload was reviewed, the study reworded the question as version 2 with a 3-point scale.
    newer = parse_protocol(PROTOCOL.replace('text = "How well did the assistant keep up with you?"',
                                            'version = "2"\ntext = "Did the assistant keep up?"')
                           .replace('points = 5\nlabels = ["Not at all", "Badly", "Somewhat", "Well", "Perfectly"]',
                                    'points = 3\nlabels = ["No", "Partly", "Yes"]'))
    review = ReviewService(db, newer, anonymizer)
    [event] = [e for e in review.pending() if e.kind == "question_answer"]
    seen = review.as_seen(event)
    assert seen is not None and "keep up?" not in seen and "(version 1)" in seen, seen
    assert seen.endswith("Your answer: 5"), seen
