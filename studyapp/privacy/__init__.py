"""Consent, on-device anonymization and review before upload: nothing leaves unless agreed, scrubbed and seen.

consent.py (the append-only consent log), anonymize.py (Presidio + offline spaCy, consistent
placeholders), collect.py (the only way into the outbox), review.py ("what will be sent"),
services.py (all of them for one database and study), commands.py (the CLI).
"""
