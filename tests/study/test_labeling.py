"""Attribute labeling follows the protocol's cadence over the real memory store; the status line counts days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlite_utils import Database

from studyapp.domain import AttributeChange, NewAttribute
from studyapp.store.memory import MemoryStore
from studyapp.study.current import current_study, save_enrollment
from studyapp.study.labeling import plan_labeling
from studyapp.study.protocol import LabelingCadence, load_protocol
from tests.study.test_protocol import EXAMPLE


def extract(memory: MemoryStore, *texts: str) -> list[str]:
    changes = [AttributeChange("add", "extracted", new=NewAttribute(t, "said so", 0.8, [])) for t in texts]
    memory.apply_changes(changes, actor="model")
    return [a.id for a in memory.list_attributes() if a.text in texts]


def test_reviews_wait_for_enough_new_attributes_then_come_in_batches(db: Database) -> None:
    memory = MemoryStore(db)
    review = LabelingCadence(every_new_attributes=3, batch_size=2, max_per_day=3)
    extract(memory, "Is vegetarian", "Plays the cello")
    memory.add_participant_attribute("Lives in Lyon")  # added by the participant: nothing to review
    assert plan_labeling(memory, review).due == []
    extract(memory, "Has a dog")
    plan = plan_labeling(memory, review)
    assert [a.text for a in plan.due] == ["Is vegetarian", "Plays the cello"]  # oldest first, one batch
    assert plan.unlabeled == 3
    for attribute in plan.due:
        memory.label(attribute.id, "makes_sense")
    extract(memory, "Runs marathons", "Works night shifts")
    plan = plan_labeling(memory, review)
    assert plan.labeled_today == 2 and [a.text for a in plan.due] == ["Has a dog"]  # daily maximum of 3
    assert plan_labeling(memory, review, now=datetime.now(UTC) + timedelta(days=1)).due != []  # a new day


def test_current_study_is_builtin_until_enrolled(db: Database) -> None:
    study = current_study(db)
    assert not study.enrolled and study.protocol.id == "local"
    protocol = load_protocol(EXAMPLE)
    save_enrollment(db, protocol, participant_id="p-1")
    study = current_study(db)
    assert study.enrolled and study.protocol == protocol and study.record is not None
    assert study.record.server_url == "https://study.example.org"
    assert study.protocol.current_consent.text == protocol.current_consent.text
    enrolled = datetime.fromisoformat(study.record.enrolled_at)
    assert study.day(enrolled)[0] == 1
    line = study.status_line(2, now=enrolled + timedelta(days=3))
    assert line == f"{protocol.title} · day 4 of 14 · 2 attributes to label"
    assert "finished" in study.status_line(now=enrolled + timedelta(days=30))


def test_withdrawn_study_falls_back_to_builtin(db: Database) -> None:
    from studyapp.store.studies import StudyStore

    save_enrollment(db, load_protocol(EXAMPLE), participant_id="p-1")
    StudyStore(db).withdraw("personalization-diary-2026")
    assert current_study(db).protocol.id == "local"


def test_a_stored_protocol_that_no_longer_validates_is_reported(db: Database) -> None:
    from studyapp.store.studies import StudyStore

    data = load_protocol(EXAMPLE).to_dict()
    data["comparisons"]["probability"] = 3
    StudyStore(db).enroll("personalization-diary-2026", data, participant_id="p")
    study = current_study(db)
    assert study.protocol.id == "local" and study.problem and "comparisons.probability = 3" in study.problem
    # Still enrolled (sync, withdrawal and protocol refresh go on), and the status line says what is wrong.
    assert study.enrolled and not study.usable
    assert "cannot be used" in study.status_line() and "personalization-diary-2026" in study.status_line()
