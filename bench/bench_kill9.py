"""How many study records a kill -9 can lose: writes records in a child process, kills it at a random moment,
starts again as the app does (the record pump drains the intake), and counts committed records without an event.

    .venv/bin/python bench/bench_kill9.py                # 30 kills
    .venv/bin/python bench/bench_kill9.py --kills 5      # a quick run

The child, enrolled and consented, loops: a participant message, a reply that streams then completes, an attribute
label, a rated comparison with a relevance label, two judge verdicts; it commits each as the app does and prints a
line after each commit. The parent kills it (SIGKILL) after a random number of lines, sometimes mid-reply. A record
counts as *committed* if the participant's database holds it after the kill; it is *lost* if, after the restart
drained the intake, the outbox holds no event for it. (A reply cut off mid-stream is committed as interrupted.)
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*, run from anywhere

from bench._common import machine
from studyapp.privacy.collect import event_id_for
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.intake import FINISHED, build
from studyapp.privacy.pump import RecordPump
from studyapp.store.collect_queue import QueuedRecord
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore
from studyapp.study.current import current_study, save_enrollment
from studyapp.study.protocol import parse_protocol
from tests.server.live import ALL_CATEGORIES, PROTOCOL

CHILD = r"""
import sys
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore

db = open_database(sys.argv[1])
conversations, memory, comparisons = ConversationStore(db), MemoryStore(db), ComparisonStore(db)
attribute = memory.add_participant_attribute("I like hiking.")
say = lambda what: print(what, flush=True)
conversation = conversations.create()
for i in range(10_000):
    prompt = conversations.add_message(conversation.id, "user", f"message {i}")
    say("message")
    reply = conversations.add_message(conversation.id, "assistant", "", status="streaming")
    for n in range(3):
        conversations.update_message(reply.id, content="word " * (n + 1))
        say("delta")
    conversations.update_message(reply.id, status="complete")
    say("reply")
    memory.label(attribute.id, "maybe", source="label_prompt")
    say("label")
    cid = comparisons.create(conversation_id=conversation.id, prompt_message_id=prompt.id, personalized_side="left",
                             coin={}, attributes=[], model="m", parameters={}, templates={})
    comparisons.record_rating(cid, rating=4, shown_choice=4, chosen_arm="personalized", chosen_message_id=None,
                              skipped=False, comment=None, time_to_rate_ms=1.0,
                              relevance=[{"attribute_id": attribute.id, "selected_by_model": True,
                                          "model_relevant": True, "status": "yes",
                                          "asked_when": "after_rating", "ask_probability": 1.0}])
    say("rating")
    for side in ("left", "right"):
        comparisons.add_verdict(cid, judge_model="j", personalized_side=side, rating=3, raw="3", template="j@1")
    say("verdicts")
"""


def committed_records(db_path: Path) -> list[tuple[str, dict]]:
    """Every study record the participant's database holds (what the study should receive)."""
    db = open_database(db_path)
    rows: list[QueuedRecord] = []
    for (mid,) in db.execute("SELECT id FROM messages WHERE status IN (?, ?, ?) AND arm IS NULL", FINISHED):
        rows.append(QueuedRecord(0, "message", mid, None, ""))
    for (lid,) in db.execute("SELECT id FROM attribute_labels"):
        rows.append(QueuedRecord(0, "attribute_label", lid, None, ""))
    for (cid,) in db.execute("SELECT comparison_id FROM ratings"):
        rows.append(QueuedRecord(0, "comparison", cid, None, ""))
    for (vid,) in db.execute("SELECT id FROM judge_verdicts WHERE rating IS NOT NULL"):
        rows.append(QueuedRecord(0, "judge_verdict", vid, None, ""))
    records = [record for row in rows for record in build(db, row)]
    db.close()
    return records


def one_kill(work: Path, rng: random.Random) -> tuple[int, int, int]:
    """(records committed, records lost, lines the child printed before the kill)."""
    path = work / "studyapp.db"
    db = open_database(path)
    protocol = parse_protocol(PROTOCOL, source="bench")
    save_enrollment(db, protocol, participant_id="p1", server_url="http://127.0.0.1:9")
    ConsentService(db).grant(protocol, ALL_CATEGORIES)
    db.close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines, target = 0, rng.randint(1, 60)
    while lines < target and child.stdout.readline():
        lines += 1
    child.kill()
    child.wait()
    db = open_database(path)
    protocol = current_study(db).protocol
    db.close()
    pump = RecordPump(path, protocol)  # what the app does at start: drain what the killed process left
    pump.flush()
    pump.close()
    db = open_database(path)
    queued = {e.event_id for e in OutboxStore(db).list()}
    db.close()
    records = committed_records(path)
    lost = sum(1 for kind, payload in records if event_id_for(kind, payload) not in queued)
    return len(records), lost, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    committed = lost = 0
    started = time.monotonic()
    for _ in range(args.kills):
        with tempfile.TemporaryDirectory() as tmp:
            n, gone, _lines = one_kill(Path(tmp), rng)
        committed += n
        lost += gone
    print(f"machine: {machine()}")
    print(f"{args.kills} kill -9s at random moments: {committed} committed study records, {lost} lost "
          f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
