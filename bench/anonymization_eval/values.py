"""Labeled values for the templates: each slot name gives an entity type and a Faker-made value.

The span of a slot is exactly the value written (a possessive "'s" or a leading "fax:" stays outside it).
STREET_ADDRESS is defined as the street with its house number, plus whatever the slot writes with it:
apartment or floor, P.O. box, postal code, city and country when they follow as one address; a city alone
is never labeled (it identifies nobody).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

from faker import Faker
from faker.providers.date_time import change_year

ENTITY_TYPES = ("PERSON", "PHONE_NUMBER", "STREET_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS",
                "IP_ADDRESS", "US_SSN", "DATE_OF_BIRTH")

# US social security numbers exist only in en_US; every locale's text may still quote one.
_US = Faker("en_US")


def _one_line(text: str) -> str:
    """Faker writes some addresses over two lines; a chat message quotes them on one."""
    return ", ".join(part.strip() for part in text.splitlines() if part.strip())


def _name(fake: Faker, rng: random.Random) -> str:
    # first + last, not fake.name(): that adds titles ("Dr.", "R.") no span should be asked to cover.
    return f"{fake.first_name()} {fake.last_name()}"


def _initial_name(fake: Faker, rng: random.Random) -> str:
    return f"{fake.first_name()} {fake.first_name()[0]}. {fake.last_name()}"


def _initial_last(fake: Faker, rng: random.Random) -> str:
    """An initial and a surname, as in a signature or a minutes line ("J. Smith", "J Smith")."""
    return f"{fake.first_name()[0]}{rng.choice(('. ', ' ', '.'))}{fake.last_name()}"


_PARTICLES = ("van", "van der", "van den", "de", "de la", "del", "von", "von der", "da", "dos", "di", "le", "ter")


def _particle_name(fake: Faker, rng: random.Random) -> str:
    """A name with a particle ("Anna van der Berg") or a double-barrelled surname ("Tom Hart-Lindqvist")."""
    if rng.random() < 0.5:
        return f"{fake.first_name()} {rng.choice(_PARTICLES)} {fake.last_name()}"
    return f"{fake.first_name()} {fake.last_name()}-{fake.last_name()}"


def _phone(fake: Faker, rng: random.Random) -> str:
    return fake.phone_number()


def _phone_local(fake: Faker, rng: random.Random) -> str:
    """National formats without a country code, grouped by spaces, dots, dashes or parentheses."""
    digits = [str(rng.randrange(10)) for _ in range(rng.choice((8, 9, 10)))]
    groups: list[str] = []
    while digits:
        take = rng.choice((2, 3, 4)) if len(digits) > 5 else len(digits)  # no 1-digit tail
        groups.append("".join(digits[:take]))
        digits = digits[take:]
    style = rng.choice(("space", "dot", "dash", "paren"))
    if style == "paren" and len(groups) > 1:
        return f"({groups[0]}) " + "-".join(groups[1:])
    return {"space": " ", "dot": ".", "dash": "-"}.get(style, " ").join(groups)


def _street(fake: Faker, rng: random.Random) -> str:
    return _one_line(fake.street_address())


def _address(fake: Faker, rng: random.Random) -> str:
    return _one_line(fake.address())


def _street_apartment(fake: Faker, rng: random.Random) -> str:
    secondary = fake.secondary_address() if hasattr(fake, "secondary_address") else f"Apt {rng.randint(1, 80)}"
    return f"{_street(fake, rng)}, {secondary}"


def _street_postcode_city(fake: Faker, rng: random.Random) -> str:
    return f"{_street(fake, rng)}, {fake.postcode()} {fake.city()}"


def _po_box(fake: Faker, rng: random.Random) -> str:
    box = rng.choice(("P.O. Box", "PO Box", "P.O.Box", "Postfach", "Box"))
    return f"{box} {rng.randint(10, 99999)}, {fake.postcode()} {fake.city()}"


def _address_country(fake: Faker, rng: random.Random) -> str:
    return f"{_street(fake, rng)}, {fake.city()}, {fake.current_country()}"


def _card(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number()
    if rng.random() < 0.5 and len(number) == 16:
        sep = rng.choice((" ", "-"))
        number = sep.join(number[i:i + 4] for i in range(0, 16, 4))
    return number


def _card_bad_luhn(fake: Faker, rng: random.Random) -> str:
    """A mistyped card or account number: a long digit run that fails the Luhn check."""
    number = fake.credit_card_number()
    while True:
        wrong = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
        if not _luhn_ok(wrong):
            return wrong


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def _iban(fake: Faker, rng: random.Random) -> str:
    iban = fake.iban()
    if rng.random() < 0.5:
        iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def _email(fake: Faker, rng: random.Random) -> str:
    return rng.choice((fake.email, fake.free_email, fake.company_email))()


def _ip(fake: Faker, rng: random.Random) -> str:
    return fake.ipv6() if rng.random() < 0.2 else fake.ipv4_public()


def _ssn(fake: Faker, rng: random.Random) -> str:
    _US.seed_instance(rng.randrange(2**32))  # the shared instance, seeded per value so sets are reproducible
    return _US.ssn()


_DOB_FORMATS = ("%d %B %Y", "%B %d, %Y", "%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y", "%-d %b %Y", "%b %-d %Y")
_DOB_NO_YEAR = ("%d %B", "%B %d", "%-d %B", "%B %-d", "%d/%m", "%d.%m.")


# Faker's date_of_birth counts back from today, so the sets would change every day: births count back from the
# day the sets were written instead (the same draws as date_of_birth made that day).
WRITTEN_ON = date(2026, 11, 29)


def _birth_date(fake: Faker, minimum_age: int = 0, maximum_age: int = 115) -> date:
    start, end = change_year(WRITTEN_ON, -(maximum_age + 1)), change_year(WRITTEN_ON, -minimum_age)
    born = fake.date_time_ad(start_datetime=start, end_datetime=end).date()
    return born if born != start else born + timedelta(days=1)


def _dob(fake: Faker, rng: random.Random) -> str:
    return _birth_date(fake, minimum_age=16, maximum_age=90).strftime(rng.choice(_DOB_FORMATS))


def _dob_no_year(fake: Faker, rng: random.Random) -> str:
    return _birth_date(fake).strftime(rng.choice(_DOB_NO_YEAR))


Maker = Callable[[Faker, random.Random], str]

# slot base name -> (entity type, maker). A template may number a slot ({first2}) for a second value of the
# kind, or suffix _lc for the value in lower case ("can u email sarah").
SLOTS: dict[str, tuple[str, Maker]] = {
    "name": ("PERSON", _name),
    "first": ("PERSON", lambda f, r: f.first_name()),
    "last": ("PERSON", lambda f, r: f.last_name()),
    "initial_name": ("PERSON", _initial_name),
    "initial_last": ("PERSON", _initial_last),
    "particle_name": ("PERSON", _particle_name),
    "surname_caps": ("PERSON", lambda f, r: f.last_name().upper()),
    "phone": ("PHONE_NUMBER", _phone),
    "phone_local": ("PHONE_NUMBER", _phone_local),
    "street": ("STREET_ADDRESS", _street),
    "address": ("STREET_ADDRESS", _address),
    "street_apt": ("STREET_ADDRESS", _street_apartment),
    "street_city": ("STREET_ADDRESS", _street_postcode_city),
    "po_box": ("STREET_ADDRESS", _po_box),
    "address_country": ("STREET_ADDRESS", _address_country),
    "card": ("CREDIT_CARD", _card),
    "card_bad": ("CREDIT_CARD", _card_bad_luhn),
    "iban": ("IBAN_CODE", _iban),
    "email": ("EMAIL_ADDRESS", _email),
    "ip": ("IP_ADDRESS", _ip),
    "ssn": ("US_SSN", _ssn),
    "dob": ("DATE_OF_BIRTH", _dob),
    "dob_noyear": ("DATE_OF_BIRTH", _dob_no_year),
}
