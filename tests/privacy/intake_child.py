"""Child process for the kill -9 tests of the outbox's intake: writes study records, says so, and is killed.

    python -m tests.privacy.intake_child DB rating     # a rated comparison, then "written", then waits
    python -m tests.privacy.intake_child DB verdicts   # a judge's verdicts in both orders, likewise

The parent kills it with SIGKILL once it has read "written": no clean exit, no record pump ever ran.
"""

from __future__ import annotations

import sys

from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database


def main(db_path: str, what: str) -> None:
    db = open_database(db_path)
    conversations = ConversationStore(db)
    comparisons = ComparisonStore(db)
    conversation = conversations.create("Weekend plans")
    prompt = conversations.add_message(conversation.id, "user", "What should I do this weekend?")
    comparison_id = comparisons.create(
        conversation_id=conversation.id, prompt_message_id=prompt.id, personalized_side="left",
        coin={"seed": 1}, attributes=[{"attribute_id": "a1", "text": "Likes hiking", "selected": True}],
        model="scripted-model", parameters={}, templates={})
    if what == "rating":
        comparisons.record_rating(comparison_id, rating=4, shown_choice=4, chosen_arm="personalized",
                                  chosen_message_id=None, skipped=False, comment=None, time_to_rate_ms=900.0,
                                  relevance=[{"attribute_id": "a1", "selected_by_model": True,
                                              "model_relevant": True, "status": "yes",
                                              "asked_when": "after_rating", "ask_probability": 1.0}])
    elif what == "verdicts":
        comparisons.record_rating(comparison_id, rating=4, shown_choice=4, chosen_arm="personalized",
                                  chosen_message_id=None, skipped=False, comment=None, time_to_rate_ms=900.0)
        for side, rating in (("left", 5), ("right", 3)):
            comparisons.add_verdict(comparison_id, judge_model="judge-1", personalized_side=side, rating=rating,
                                    raw=str(rating), template="judge@1")
    print("written", flush=True)
    sys.stdin.read()  # wait for the kill


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
