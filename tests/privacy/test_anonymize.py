"""The anonymizer: what it removes, consistent placeholders, terms, offline loading and the NER fallback."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from sqlite_utils import Database

from studyapp.privacy import anonymize
from studyapp.privacy.anonymize import PLACEHOLDER, Anonymizer
from studyapp.store.privacy import PrivacyStore

SAMPLES = {
    "EMAIL_ADDRESS": ("write to maria.lopez@example.org please", "maria.lopez@example.org"),
    "PHONE_NUMBER": ("call me on +1 415-555-0132 tonight", "415-555-0132"),
    "CREDIT_CARD": ("my card is 4111 1111 1111 1111", "4111 1111 1111 1111"),
    "IBAN_CODE": ("send it to DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00"),
    "IP_ADDRESS": ("the server is at 192.168.1.20 now", "192.168.1.20"),
    "URL": ("see https://myblog.example.com/about for more", "myblog.example.com"),
    "DATE_TIME": ("I was born on 12/03/1987 in winter", "12/03/1987"),
    "LOCATION": ("I live at 42 Elm Street with my cat", "42 Elm Street"),
    "PERSON": ("Yesterday Maria Lopez called me", "Maria Lopez"),
}


@pytest.mark.parametrize("entity", sorted(SAMPLES))
def test_each_entity_type_is_replaced_by_its_placeholder(anonymizer: Anonymizer, entity: str) -> None:
    text, secret = SAMPLES[entity]
    out = anonymizer.anonymize(text)
    assert secret not in out
    assert f"<{entity}_1>" in out


def test_relative_dates_and_ordinary_words_stay(anonymizer: Anonymizer) -> None:
    text = "yesterday I cooked pasta for 3 hours and next week I will try a new recipe"
    assert anonymizer.anonymize(text) == text


def test_the_same_person_gets_the_same_placeholder_in_every_message(db: Database) -> None:
    first = Anonymizer(db).anonymize("I had lunch with Maria Lopez and John Smith.")
    # A new Anonymizer on the same database (e.g. after a restart) uses the same mapping.
    second = Anonymizer(db).anonymize("John Smith says hi. Maria  Lopez does not.")
    assert "Maria" not in first + second and "John" not in first + second
    people_first = PLACEHOLDER.findall(first)
    assert len(set(people_first)) == 2
    mapping = PrivacyStore(db).mapping()
    maria, john = mapping[("PERSON", "maria lopez")], mapping[("PERSON", "john smith")]
    assert maria != john
    assert first == f"I had lunch with {maria} and {john}."
    assert second == f"{john} says hi. {maria} does not."


def test_anonymizing_twice_changes_nothing(anonymizer: Anonymizer) -> None:
    once = anonymizer.anonymize("Maria Lopez (maria@example.org, born 1987-03-12) lives at 7 Oak Road, Boston.")
    assert once != "Maria Lopez (maria@example.org, born 1987-03-12) lives at 7 Oak Road, Boston."
    assert anonymizer.anonymize(once) == once
    assert anonymizer.anonymize_batch([once, once]) == [once, once]


def test_always_remove_terms_are_matched_case_insensitively(anonymizer: Anonymizer) -> None:
    assert "Brightwave" in anonymizer.anonymize("I work at Brightwave on Mondays")
    assert anonymizer.add_term("Brightwave")
    out = anonymizer.anonymize("I work at BRIGHTWAVE on Mondays, brightwave pays well")
    assert "rightwave" not in out.lower()
    assert out.count("<TERM_1>") == 2
    assert anonymizer.apply_terms("<PERSON_1> left Brightwave") == "<PERSON_1> left <TERM_1>"
    assert not anonymizer.add_term("Brightwave")
    with pytest.raises(ValueError, match="empty"):
        anonymizer.add_term("   ")


def test_batch_matches_one_by_one(db: Database) -> None:
    texts = ["Maria Lopez lives in Paris", "", "mail maria@example.org", "nothing to see here"]
    batch = Anonymizer(db).anonymize_batch(texts)
    assert batch == [Anonymizer(db).anonymize(t) for t in texts]


def test_without_a_database_placeholders_are_consistent_within_the_run() -> None:
    a = Anonymizer(None)
    assert a.anonymize("Maria Lopez called") == a.anonymize("Maria Lopez called")


def test_missing_model_falls_back_to_patterns_without_downloading(monkeypatch: pytest.MonkeyPatch) -> None:
    import spacy.cli

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("spacy tried to download a model")

    monkeypatch.setattr(spacy.cli, "download", no_download)
    a = Anonymizer(None, model_name="en_core_web_missing_model")
    assert a.ner_available is False
    assert "Only pattern recognizers are active" in a.status_message
    out = a.anonymize("Maria Lopez: maria@example.org, +1 415-555-0132")
    assert "<EMAIL_ADDRESS_1>" in out and "<PHONE_NUMBER_1>" in out
    assert "Maria Lopez" in out  # no NER: names stay unless they are terms
    a.add_term("Maria Lopez")
    assert "Maria" not in a.anonymize("Maria Lopez says hi")


def test_engines_load_without_any_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(anonymize, "_engines", {})
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    a = Anonymizer(None)
    assert a.ner_available
    # The e-mail recognizer checks the domain against the public suffix list: the bundled one.
    assert a.anonymize("mail maria@example.co.uk") == "mail <EMAIL_ADDRESS_1>"


def test_a_name_keeps_its_placeholder_when_the_recognizer_changes_its_type(db: Database) -> None:
    anonymizer = Anonymizer(db)
    store = PrivacyStore(db)
    person = store.placeholder("PERSON", "Olivia")
    assert store.placeholder("LOCATION", "olivia", same_as=anonymize.NAME_TYPES) == person
    assert anonymizer.placeholder("LOCATION", "Olivia") == person
    anonymizer.add_term("Olivia")
    assert anonymizer.anonymize("Olivia called") == f"{person} called"
    # Without a database the same rule holds within the run.
    run_only = Anonymizer(None)
    assert run_only.placeholder("PERSON", "Ingrid") == run_only.placeholder("LOCATION", "ingrid")
    # Patterns are never merged with names.
    assert anonymizer.placeholder("EMAIL_ADDRESS", "olivia") != person


def test_addresses_with_unlisted_domains_are_removed_too(anonymizer: Anonymizer) -> None:
    out = anonymizer.anonymize("write to ops@build.corp.local or a.b@host.example")
    assert re.fullmatch(r"write to <EMAIL_ADDRESS_\d> or <EMAIL_ADDRESS_\d>", out), out


def test_a_term_added_through_another_connection_applies_at_once(db: Database, db_path: Any) -> None:
    from studyapp.store.db import open_database

    collecting = Anonymizer(db)
    assert "Brightwave" in collecting.anonymize("Brightwave called")  # engine and terms warmed up
    other = open_database(db_path)
    Anonymizer(other).add_term("Brightwave")
    other.close()
    assert "Brightwave" not in collecting.anonymize("Brightwave called")
    assert collecting.remove_term("Brightwave")
    assert collecting.terms() == []


# Card and phone numbers the card recognizer's Luhn check and phonenumbers' regions miss (issue 13) ---------------

def _types_over(anonymizer: Anonymizer, text: str, part: str) -> set[str]:
    start = text.index(part)
    return {f.entity_type for f in anonymizer.analyze(text) if f.start < start + len(part) and start < f.end}


@pytest.mark.parametrize("text, number", [
    ("please refund the charge on card number 4672 0359 6678 3833", "4672 0359 6678 3833"),  # Luhn fails
    ("my card 4189943913828892548 expired", "4189943913828892548"),  # 19 digits
    ("Card: 676323652286", "676323652286"),  # 12 digits
    ("my account number is 4672-0359-6678-3833", "4672-0359-6678-3833"),
])
def test_a_card_number_that_fails_luhn_is_removed_after_a_card_word(anonymizer: Anonymizer, text: str,
                                                                    number: str) -> None:
    out = anonymizer.anonymize(text)
    assert number not in out
    assert "<CREDIT_CARD_1>" in out
    assert anonymizer.anonymize(out) == out


@pytest.mark.parametrize("text", [
    "order 1234567890123 arrived on Friday",
    "the tracking code 4672035966783833 is on the box",
    "we sold 1234567890123 units",
])
def test_a_long_number_without_card_context_is_kept(anonymizer: Anonymizer, text: str) -> None:
    assert anonymizer.anonymize(text) == text


@pytest.mark.parametrize("text, number", [
    ("Cheers, Tom\nfax 9472 7916", "9472 7916"),
    ("Office phone (37) 788-063", "(37) 788-063"),
    ("or mobile 60-56-85-91 if the draft is ready", "60-56-85-91"),
    ("call me on 48.191.5395", "48.191.5395"),
    ("call me on 9472 7916 tonight", "9472 7916"),  # "call" is a spaCy stop word, see _CALL_BEFORE
    ("new number is 1464-12166", "1464-12166"),
    ("tel. +49(0)9632 28461", "+49(0)9632 28461"),
])
def test_a_national_phone_number_after_a_phone_word_is_removed(anonymizer: Anonymizer, text: str,
                                                              number: str) -> None:
    # Found as a phone number (spaCy may also call a digit run a date, and its higher score names the placeholder).
    assert "PHONE_NUMBER" in _types_over(anonymizer, text, number)
    out = anonymizer.anonymize(text)
    assert number not in out
    assert anonymizer.anonymize(out) == out


@pytest.mark.parametrize("text, part", [
    ("call me on 2026-11-29 about it", "2026-11-29"),
    ("phone me on 29.11.2026 please", "29.11.2026"),
    ("call me, the new phone costs 1.299,00 EUR", "1.299,00"),
    ("call the office, the flat costs 1.299.000 EUR", "1.299.000"),
    ("office hours 2019-2021, call me", "2019-2021"),
    ("call me at 12.03.2026 12:30", "12:30"),
    ("call me, my card is 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("phone the bank about DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00"),
])
def test_dates_prices_cards_and_ibans_near_a_phone_word_are_not_phone_numbers(anonymizer: Anonymizer, text: str,
                                                                             part: str) -> None:
    assert "PHONE_NUMBER" not in _types_over(anonymizer, text, part)


def test_a_date_and_a_price_stay_when_only_cards_and_phones_are_removed(db: Database) -> None:
    text = "call me on 2026-11-29 (card number in the letter), the phone costs 1.299,00"
    assert Anonymizer(db, entities=["PHONE_NUMBER", "CREDIT_CARD"]).anonymize(text) == text


def test_order_numbers_without_card_context_stay_also_next_to_a_phone_word(anonymizer: Anonymizer) -> None:
    text = "order number 12345678 is late, call me"
    assert anonymizer.anonymize(text) == text


def test_load_also_builds_presidios_anonymizer_so_the_upload_path_never_pays_its_import() -> None:
    from studyapp.privacy.anonymize import anonymizer_engine

    anonymizer_engine.cache_clear()
    Anonymizer().load()
    assert anonymizer_engine.cache_info().currsize == 1
