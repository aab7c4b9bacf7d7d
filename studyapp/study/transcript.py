"""The conversation a comparison's answers were written with, as one canonical text.

A comparison records the ids of the history messages both arms were given and the sha256 of their transcript
(studyapp.study.comparison); the judge rebuilds the transcript from those ids, puts it in its prompt and records
its sha256 and length (studyapp.study.judge). Both use ``context_transcript``, so equal hashes mean the judge saw
exactly what the arms were generated with, and a message edited or deleted since shows as a different hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from studyapp.domain import Message

ROLE_LABELS = {"user": "User", "assistant": "Assistant"}


def context_transcript(messages: Sequence[Message]) -> str:
    """One "User: ..." / "Assistant: ..." paragraph per message, in order; empty for no messages."""
    return "\n\n".join(f"{ROLE_LABELS.get(m.role, m.role.capitalize())}: {m.content}" for m in messages)


def transcript_sha256(transcript: str) -> str:
    """The sha256 (lowercase hex) of a transcript's UTF-8 text."""
    return hashlib.sha256(transcript.encode("utf-8")).hexdigest()
