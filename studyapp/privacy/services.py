"""The privacy part assembled for one participant database and study: what the app wires into its screens.

    services = PrivacyServices.create(db, protocol)
    services.anonymizer.load()          # in a worker at start-up: building the engines takes a second or two
    services.collector.collect(kind, payload)   # also from a worker: anonymizing takes ~10 ms per message
    ConsentScreen(protocol, services.consent, services.review)  # stores always-remove terms with the
                                        # decision, dismisses with a ConsentRecord, then (in a worker):
    services.after_consent(record)      # queues earlier records if the participant chose to include them
    ReviewScreen(services.review)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentRecord, ConsentService
from studyapp.privacy.intake import backfill
from studyapp.privacy.review import ReviewService
from studyapp.study.protocol import Protocol


@dataclass(frozen=True)
class PrivacyServices:
    consent: ConsentService
    anonymizer: Anonymizer
    collector: Collector
    review: ReviewService

    @classmethod
    def create(cls, db: Database, protocol: Protocol, *, anonymizer: Anonymizer | None = None) -> PrivacyServices:
        consent = ConsentService(db)
        anonymizer = anonymizer or Anonymizer(db)
        return cls(consent, anonymizer, Collector(db, protocol, anonymizer, consent),
                   ReviewService(db, protocol, anonymizer))

    def after_consent(self, record: ConsentRecord | None) -> int:
        """Queue the earlier records of the categories the participant chose to include; returns how many."""
        if record is None or not record.include_earlier:
            return 0
        return backfill(self.collector, record.include_earlier)
