"""Phone numbers in the national formats of many regions, and dates of birth in the ways people write them, in
several languages; ordinary numbers and dates that point at no one stay (studyapp/privacy/anonymize.py).

Every text here is written for these tests; none comes from the bench's evaluation sets.
"""

from __future__ import annotations

import pytest

from studyapp.privacy.anonymize import Anonymizer


@pytest.fixture(scope="module")
def run_only() -> Anonymizer:
    return Anonymizer().load()


def assert_gone(anonymizer: Anonymizer, text: str, value: str, placeholder: str, kept: list[str]) -> None:
    out = anonymizer.anonymize(text)
    assert value not in out, f"{value!r} left in {out!r}"
    assert f"<{placeholder}_" in out, out
    for word in kept:
        assert word in out, f"{word!r} was removed from {out!r}"


# No phone word in these: the number must be read as a number of its region.
@pytest.mark.parametrize(("text", "number"), [
    ("new one is 0176 1234 5678 from today", "0176 1234 5678"),            # Germany, mobile
    ("new one is 06 12 34 56 78 from today", "06 12 34 56 78"),            # France, mobile
    ("new one is +44 (0)20 7946 0018 from today", "7946 0018"),            # UK with the trunk zero
    ("new one is 044 668 18 00 from today", "044 668 18 00"),              # Switzerland
    ("new one is 03-1234-5678 from today", "03-1234-5678"),                # Japan
    ("new one is 32 12 34 56 from today", "32 12 34 56"),                  # Denmark
    ("new one is 40 61 23 45 from today", "40 61 23 45"),                  # Norway
    ("new one is 5123 4567 from today", "5123 4567"),                      # Estonia
    ("new one is 21 234 567 from today", "21 234 567"),                    # Latvia
    ("new one is 96 123456 from today", "96 123456"),                      # Cyprus
    ("new one is 27 12 34 56 from today", "27 12 34 56"),                  # Luxembourg
    ("new one is 611 1234 from today", "611 1234"),                        # Iceland
    ("new one is 200 123 4567 from today", "200 123 4567"),                # Mexico
    ("new one is 8123 4567 from today", "8123 4567"),                      # Singapore
], ids=["de", "fr", "gb-trunk", "ch", "jp", "dk", "no", "ee", "lv", "cy", "lu", "is", "mx", "sg"])
def test_national_phone_formats(run_only: Anonymizer, text: str, number: str) -> None:
    assert_gone(run_only, text, number, "PHONE_NUMBER", ["new one is", "from today"])


def test_a_number_with_a_phone_word_in_a_grouping_no_region_has(run_only: Anonymizer) -> None:
    assert_gone(run_only, "my number is +45 12 34 56 78", "12 34 56 78", "PHONE_NUMBER", ["my number is"])


@pytest.mark.parametrize("text", [
    "order 1234567 shipped",
    "we won 3-1 at home",
    "version 10.4.2 is out",
    "it costs 1.250,00 euros",
    "room 4021, floor 3",
    "flight LH 2034 at 10:15",
    "ISBN 978-3-16-148410-0",
], ids=lambda text: text[:30])
def test_numbers_that_are_no_phones_stay(run_only: Anonymizer, text: str) -> None:
    assert run_only.anonymize(text) == text


@pytest.mark.parametrize(("text", "date"), [
    ("she was born in March '87 in a small town", "March '87"),
    ("Ruth (b. 1987) teaches maths", "1987"),
    ("née le 3 mars 1990 à Lyon", "3 mars 1990"),
    ("geb. 03.12.1990 in Graz", "03.12.1990"),
    ("DOB: 3rd Dec, please keep it private", "3rd Dec"),
    ("age 34, born 12 Feb", "12 Feb"),
    ("urodzona 3 maja 1990 w Krakowie", "3 maja 1990"),
    ("født 3. marts 1990 i Aarhus", "3. marts 1990"),
    ("doğum tarihi: 03.12.1990", "03.12.1990"),
    ("narozena 3. května 1990 v Brně", "3. května 1990"),
    ("fecha de nacimiento: 12 de enero de 1985", "12 de enero de 1985"),
], ids=["month-year", "b-year", "fr", "de", "dob-no-year", "age-born", "pl", "da", "tr", "cs", "es"])
def test_dates_of_birth(run_only: Anonymizer, text: str, date: str) -> None:
    out = run_only.anonymize(text)
    assert date not in out, out
    assert "<DATE_TIME_" in out, out


@pytest.mark.parametrize("text", [
    "we launched in March and it went well",
    "the score was 30/10 at half time",
    "born to run, as the song says",
    "the 87 bus was late again",
    "Mart is closed on Sundays",
], ids=lambda text: text[:30])
def test_dates_that_point_at_no_one_stay(run_only: Anonymizer, text: str) -> None:
    assert run_only.anonymize(text) == text


def test_an_ip_address_is_no_phone_number(run_only: Anonymizer) -> None:
    out = run_only.anonymize("ping 203.0.113.42 and 172.16.254.1 from the office")
    assert "<IP_ADDRESS_" in out and "<PHONE_NUMBER_" not in out, out
