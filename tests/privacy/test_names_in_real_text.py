"""Person names in the shapes real text takes: chat exports (WhatsApp, Slack, Teams, Discord, Telegram, IRC),
mail headers and quoting, meeting notes, lists, sentence starts, signatures with a phone's footer; what must stay;
and a participant's known full name found again in a later text (studyapp/privacy/names.py, anonymize.py).

Every text here is written for these tests; none comes from the bench's evaluation sets.
"""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from studyapp.privacy.anonymize import PLACEHOLDER, Anonymizer
from tests.privacy.names_support import assert_removed


@pytest.fixture(scope="module")
def run_only() -> Anonymizer:
    return Anonymizer().load()


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("29/11/2026, 10:02 - Anna Berg: still on for tonight?\n29/11/2026, 10:05 - Tomasz Wójcik: yes, at 7",
     ["Anna Berg", "Tomasz Wójcik"], ["still on for tonight?", "yes, at 7"]),
    ("[29.11.26, 10:02:11] Hedda Brun: see you at the station\n[29.11.26, 10:03:40] Ines: ok 👍",
     ["Hedda Brun", "Ines"], ["see you at the station", "ok 👍"]),
    ("11/29/26, 10:02 PM - anneli: did you finish the slides\n11/29/26, 10:04 PM - Kwabena: almost",
     ["anneli", "Kwabena"], ["did you finish the slides", "almost"]),
    ("Ottilie Maas  10:02 AM\nhas anyone seen the budget sheet?\nTeo Ng  10:05 AM\nit's in the shared drive",
     ["Ottilie Maas", "Teo Ng"], ["has anyone seen the budget sheet?", "shared drive"]),
    ("Radka Novak 10:02\nCan we move the call?\nLiu Yang 10:04\nSure, 11 works",
     ["Radka Novak", "Liu Yang"], ["Can we move the call?", "Sure, 11 works"]),
    ("[10:02] Radka Novak\nCan we move the call?\n[10:04] Liu Yang\nSure",
     ["Radka Novak", "Liu Yang"], ["Can we move the call?"]),
    ("Saoirse — Today at 10:02\nanyone up for a game?\nkenji — Today at 10:05\nme",
     ["Saoirse", "kenji"], ["Today at 10:02", "anyone up for a game?"]),
    ("Björk Ásgeirsdóttir, [29.11.2026 10:02]\nthe train is late\nTomasz, [29.11.2026 10:03]\nno problem",
     ["Björk Ásgeirsdóttir", "Tomasz"], ["the train is late", "no problem"]),
    ("<marit> has anyone tried the new build\n<kenji_w> works for me\n<marit> thanks",
     ["marit", "kenji_w"], ["has anyone tried the new build", "works for me"]),
    ("[10:02] <anouk_b> build is red\n[10:03] <oskar> looking", ["anouk_b", "oskar"], ["build is red", "looking"]),
    ("Sent from my iPhone\n\nOn 3 Mar, Bjørn Aas wrote:\n> ok", ["Bjørn Aas"], ["Sent from my iPhone", "wrote:"]),
    ("Nov 29, 2026 at 10:02:11 AM - Ingeborg Rask: landed!\nNov 29, 2026 at 10:04:02 AM - Me: great",
     ["Ingeborg Rask"], ["landed!", "great"]),
    ("yuki 🌸: who's bringing the cake?\nJo ✈️: me\nyuki 🌸: yay", ["yuki", "Jo"], ["🌸", "bringing the cake", "yay"]),
], ids=["whatsapp-android", "whatsapp-ios", "whatsapp-us", "slack", "teams", "teams-bracket", "discord",
        "telegram", "irc", "irc-stamped", "mail-quote", "imessage-copy", "emoji"])
def test_chat_exports_and_mail_quoting(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    out = assert_removed(run_only, text, names, kept)
    assert out.count("\n") == text.count("\n")


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("From: Wiebke Loos\nTo: Teo Ng\nCc: Liu Yang, Ifeoma\nSubject: budget",
     ["Wiebke Loos", "Teo Ng", "Liu Yang", "Ifeoma"], ["From:", "\nTo:", "\nCc:", "Subject: budget"]),
    ("Attendees: Wiebke Loos, Teo Ng, Ifeoma\nAgenda: budget", ["Wiebke Loos", "Teo Ng", "Ifeoma"],
     ["Attendees:", "Agenda: budget"]),
    ("Present: Aurelio, Dagny and Siosaia\nApologies: Ruairi", ["Aurelio", "Dagny", "Siosaia", "Ruairi"],
     ["Present:", "Apologies:"]),
], ids=["mail-headers", "attendees", "present-apologies"])
def test_header_fields_and_meeting_notes(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    assert_removed(run_only, text, names, kept)


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("Ines said the exam is on Friday.", ["Ines"], ["said the exam", "Friday"]),
    ("Tomasz is coming tomorrow.", ["Tomasz"], ["is coming tomorrow"]),
    ("Yesterday Ngaio wrote back.", ["Ngaio"], ["wrote back"]),
    ("See you then.\n--\nMaximilian Krüger\nSent from my iPhone", ["Maximilian Krüger"], ["Sent from my iPhone"]),
    ("Cheers,\nkate", ["kate"], ["Cheers,"]),
    ("Marie-Claire Dubois-Laurent and Zofia Szczęsna signed up.", ["Marie-Claire Dubois-Laurent", "Zofia Szczęsna"],
     ["signed up"]),
    ("thanks @anna.berg and @kenji for the review", ["anna", "berg", "kenji"], ["thanks @", "for the review"]),
    ("@Anna can you check the numbers?", ["Anna"], ["@", "can you check the numbers?"]),
], ids=["said", "is-coming", "wrote", "iphone-footer", "cheers-lower", "double-barrelled",
        "mentions", "mention-capitalized"])
def test_names_in_other_real_positions(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    assert_removed(run_only, text, names, kept)


@pytest.mark.parametrize("text", [
    "Standup 10:00\nLunch 12:30\nReview 15:00",
    "Monday 10:02\nTuesday 11:00",
    "<div> hello\n<span> world",
    "Attendees: all staff\nAgenda: budget",
    "The build is running again.",
    "Thanks team, see you Monday",
    "Microsoft said the update is coming.",
    "Monday: gym\nTuesday: swim\nMonday: rest",
    "Sent from my iPhone",
    "@here the build is green again",
    "@channel standup moved to 10:30",
    "Everyone is coming tomorrow.",
], ids=lambda text: text.split("\n")[0][:30])
def test_look_alikes_stay(run_only: Anonymizer, text: str) -> None:
    assert run_only.anonymize(text) == text


# A participant's known name in a later text ------------------------------------------------------------------

def test_a_known_full_name_is_removed_where_nothing_else_finds_it(db: Database) -> None:
    first = Anonymizer(db).anonymize("My name is Oddny Tveit, I need help with a letter.")
    (oddny,) = PLACEHOLDER.findall(first)
    # No cue in these: they are removed because the participant's mapping knows the name.
    assert Anonymizer(db).anonymize("tveit is on page two") == f"{oddny} is on page two"
    assert Anonymizer(db).anonymize("Oddny bought milk") == f"{oddny} bought milk"


def test_a_wrong_single_word_or_dictionary_word_detection_does_not_spread(db: Database) -> None:
    anonymizer = Anonymizer(db)
    # As if a recognizer had once called these persons: none is a trusted full name.
    for value in ("Docker", "Compose Stack", "Grace Park", "Build 42"):
        anonymizer.placeholder("PERSON", value)
    text = "my docker setup and the compose stack, then a walk in the park, build 42"
    assert Anonymizer(db).anonymize(text) == text


def test_known_names_spread_without_a_database_too() -> None:
    anonymizer = Anonymizer()
    anonymizer.anonymize("Name: Oddny Tveit")
    assert PLACEHOLDER.fullmatch(anonymizer.anonymize("oddny").strip())
