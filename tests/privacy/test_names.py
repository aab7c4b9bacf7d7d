"""Person names where people write them (introductions, labels, signatures, transcripts), what must stay, and one
placeholder per person (studyapp/privacy/names.py, PrivacyStore.placeholder).

Every sentence here is written for these tests; none comes from the bench's evaluation sets.
"""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from studyapp.privacy.anonymize import PLACEHOLDER, Anonymizer
from studyapp.store.privacy import PrivacyStore
from tests.privacy.names_support import assert_removed


@pytest.fixture(scope="module")
def run_only() -> Anonymizer:
    """One anonymizer without a database for the detection cases (placeholders do not matter there)."""
    return Anonymizer().load()


# Each class of text where names used to leak ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "names", "kept"), [
    ("My name is Oskari Lindqvist and I need a cover letter.", ["Oskari Lindqvist"], ["My name is", "cover letter"]),
    ("I'm Radhika, a nurse on the night shift.", ["Radhika"], ["I'm", "nurse"]),
    ("im wojtek, we spoke about the spreadsheet", ["wojtek"], ["im", "spreadsheet"]),
    ("Hi, this is Thandiwe from the choir, can you draft an invite?", ["Thandiwe"], ["this is", "choir"]),
    ("Ximena here, what rhymes with orange?", ["Ximena"], ["here", "orange"]),
    ("Name: Bartholomew Quist\nRole: volunteer", ["Bartholomew Quist"], ["Name:", "Role: volunteer"]),
    ("Contact: Ifeoma Okonkwo-Adeyemi (evenings only)", ["Ifeoma Okonkwo-Adeyemi"], ["Contact:", "evenings"]),
], ids=["my-name-is", "i-am", "im-lowercase", "this-is", "x-here", "name-label", "contact-label"])
def test_introductions_and_labels(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    assert_removed(run_only, text, names, kept)


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("Ruairi: did you book the table?\nSolveig: yes, for four\nRuairi: great", ["Ruairi", "Solveig"],
     ["book the table", "for four", "great"]),
    ("[09:14] Teodora: running late\n[09:15] Keanu: no worries Teodora", ["Teodora", "Keanu"],
     ["[09:14]", "running late", "no worries"]),
    ("bo: u up?\nkasia: yes\nbo: call me", ["kasia"], ["u up", "call me"]),
], ids=["labels", "time-stamped", "lower-case"])
def test_speaker_labels_of_a_transcript(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    out = assert_removed(run_only, text, names, kept)
    assert out.count("\n") == text.count("\n")


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("See you on Friday.\n\nBest,\nLorcan", ["Lorcan"], ["Best,"]),
    ("The figures are attached. Regards, Henrike Vosskamp", ["Henrike Vosskamp"], ["Regards,"]),
    ("Could you check the draft? Thanks — Aoife", ["Aoife"], ["Thanks —"]),
    ("Draft attached.\n--\nMagnhild Saether\nProject lead", ["Magnhild Saether"], ["--", "Project lead"]),
    ("Dear Evangelia,\nthank you for the lovely flowers.", ["Evangelia"], ["Dear", "lovely flowers"]),
    ("Dear Mr Okwuosa, please find my form attached.", ["Okwuosa"], ["Dear Mr", "form attached"]),
    ("hey ottilie, did the parcel arrive?", ["ottilie"], ["hey", "parcel"]),
    ("ok will do, thanks, radomir", ["radomir"], ["ok will do, thanks,"]),
], ids=["best-newline", "regards", "thanks-dash", "separator", "dear", "dear-title", "hey-lower", "thanks-lower"])
def test_signatures_and_salutations(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    assert_removed(run_only, text, names, kept)


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("Is Ngozi's new flat near the river?", ["Ngozi"], ["new flat", "'s"]),
    ("can u text wiremu that dinner is at 7", ["wiremu"], ["can u text", "dinner"]),
    ("remind ludmila to bring the charger", ["ludmila"], ["remind", "charger"]),
    ("ask oisin if he wants pizza", ["oisin"], ["ask", "pizza"]),
    ("I will have lunch with zbigniew tomorrow", ["zbigniew"], ["lunch with", "tomorrow"]),
    ("me and Gwenllian are painting the fence", ["Gwenllian"], ["me and", "fence"]),
    ("haha tamsin just sent me a voice note", ["tamsin"], ["just sent", "voice note"]),
], ids=["possessive", "text-lower", "remind-lower", "ask-lower", "with-lower", "me-and", "subject-lower"])
def test_people_talked_about(run_only: Anonymizer, text: str, names: list[str], kept: list[str]) -> None:
    assert_removed(run_only, text, names, kept)


@pytest.mark.parametrize(("text", "names", "kept"), [
    ("The lease was signed by Marguerite A. Tourneur last spring.", ["Marguerite A. Tourneur"], ["signed by"]),
    ("Yesterday I ran into Wenceslas Przybylski at the market.", ["Wenceslas Przybylski"], ["at the market"]),
    ("Dear Szczepan Brzęczyszczykiewicz,\nyour parcel is ready.", ["Szczepan Brzęczyszczykiewicz"], ["parcel"]),
    ("Please forward it to Lot van der Hoeven by Friday.", ["Lot van der Hoeven"], ["by Friday"]),
], ids=["initial", "unknown-full-name", "non-english", "particles"])
def test_whole_names_with_initials_particles_and_unfamiliar_spelling(run_only: Anonymizer, text: str,
                                                                      names: list[str], kept: list[str]) -> None:
    assert_removed(run_only, text, names, kept)


def test_a_name_found_once_is_removed_everywhere_in_the_text(run_only: Anonymizer) -> None:
    out = run_only.anonymize("Tygo: shall we leave at six?\nIngrid: sure\nIngrid: and tell Tygo to bring snacks")
    assert "Tygo" not in out and "Ingrid" not in out
    assert "tell" in out and "bring snacks" in out


@pytest.mark.parametrize("text", [
    "I'm tired",
    "I'm so done with this week",
    "im gonna be late again",
    "Python here is fine",
    "Dear diary, today was long",
    "May I ask something?",
    "This is fine.",
    "Thanks, that helped a lot!",
    "Best of luck with the exam",
    "Hi all, quick update on the garden",
    "Note: preheat the oven\nTip: use butter",
    "Q: why is the sky blue?\nA: scattering",
    "User: hi\nAssistant: hello, how can I help?",
    "TODO: fix the login bug",
    "Step 1: boil water\nStep 2: add pasta",
    "can you email support about my order",
    "ask the landlord for a receipt",
    "I need help with numpy and pandas",
    "Kind regards,\nThe Support Team",
    "text me when you land",
    "Kubernetes: an orchestrator\nTerraform: infrastructure as code\nAnsible: configuration management",
    "Ubuntu: 24.04\nKernel: 6.8",
    "please upgrade to Ubuntu soon",
    "a short poem about Kubernetes",
    "Thanks ChatGPT",
    "Here is the list:\n- Groceries",
    "hi everyone, quick question",
    "cheers, mate",
    "me: hi\nhim: hello\nme: ok",
], ids=lambda text: text.split("\n")[0][:30])
def test_ordinary_text_stays_unchanged(run_only: Anonymizer, text: str) -> None:
    assert run_only.anonymize(text) == text


def test_names_inside_addresses_are_left_to_the_address_recognizers(run_only: Anonymizer) -> None:
    out = run_only.anonymize("Contact: elowen_park@example.org, from Elowen Park")
    assert "<EMAIL_ADDRESS_" in out and "example.org" not in out
    assert "_park" not in out and "Elowen" not in out


# One placeholder per person -----------------------------------------------------------------------------------

def person(db: Database, value: str) -> str:
    return PrivacyStore(db).mapping()[("PERSON", value)]


def test_a_first_name_or_surname_after_the_full_name_keeps_its_placeholder(db: Database) -> None:
    full = Anonymizer(db).anonymize("I had coffee with Jonas Becker on Sunday.")
    (jonas,) = PLACEHOLDER.findall(full)
    # Later messages, through a new Anonymizer on the same database (as after a restart).
    assert Anonymizer(db).anonymize("Jonas says the venue is booked.") == f"{jonas} says the venue is booked."
    assert Anonymizer(db).anonymize("Dear Mr Becker, thank you.") == f"Dear Mr {jonas}, thank you."
    assert person(db, "jonas") == person(db, "becker") == person(db, "jonas becker") == jonas
    # The next person gets the next number: aliases take none.
    other = Anonymizer(db).anonymize("Lunch with Henrike Vosskamp.")
    assert other == "Lunch with <PERSON_2>." and jonas == "<PERSON_1>"


def test_a_full_name_after_the_first_name_alone_reuses_its_placeholder(db: Database) -> None:
    first = Anonymizer(db).anonymize("Ximena here, quick question about taxes")
    (ximena,) = PLACEHOLDER.findall(first)
    full = Anonymizer(db).anonymize("My name is Ximena Ortuzar, I filed late.")
    assert full == f"My name is {ximena}, I filed late."


def test_two_full_names_sharing_a_first_name(db: Database) -> None:
    store = PrivacyStore(db)
    berg = store.placeholder("PERSON", "Anna Berg")
    schmidt = store.placeholder("PERSON", "Anna Schmidt")
    assert berg != schmidt
    # A bare "Anna" goes to the full name stored most recently, and stays there.
    assert store.placeholder("PERSON", "anna") == schmidt
    store.placeholder("PERSON", "Anna Lindgren")
    assert store.placeholder("PERSON", "Anna") == schmidt
    assert store.placeholder("PERSON", "Berg") == berg


def test_a_first_name_alone_belongs_to_one_full_name_only(db: Database) -> None:
    store = PrivacyStore(db)
    anna = store.placeholder("PERSON", "Anna")
    assert store.placeholder("PERSON", "Anna Berg") == anna
    # A second Anna with another surname is another person.
    schmidt = store.placeholder("PERSON", "Anna Schmidt")
    assert schmidt != anna
    assert store.placeholder("PERSON", "anna") == anna
    # A middle initial more or less is the same person.
    assert store.placeholder("PERSON", "Anna B. Berg") == anna


def test_a_full_name_whose_first_name_and_surname_were_two_people_gets_its_own(db: Database) -> None:
    store = PrivacyStore(db)
    jonas, becker = store.placeholder("PERSON", "Jonas"), store.placeholder("PERSON", "Becker")
    assert jonas != becker
    assert store.placeholder("PERSON", "Jonas Becker") not in (jonas, becker)


def test_other_types_are_not_merged_by_words(db: Database) -> None:
    store = PrivacyStore(db)
    store.placeholder("PERSON", "Paris Hilton")
    assert store.placeholder("LOCATION", "Paris") == "<LOCATION_1>"


def test_without_a_database_the_run_keeps_one_placeholder_per_person() -> None:
    anonymizer = Anonymizer()
    (jonas,) = PLACEHOLDER.findall(anonymizer.anonymize("I had coffee with Jonas Becker on Sunday."))
    assert anonymizer.placeholder("PERSON", "Jonas") == jonas
    assert anonymizer.placeholder("PERSON", "becker") == jonas
    first = anonymizer.placeholder("PERSON", "Ximena")
    assert anonymizer.placeholder("PERSON", "Ximena Ortuzar") == first != jonas
    assert anonymizer.placeholder("PERSON", "Ximena Ruiz") not in (first, jonas)
