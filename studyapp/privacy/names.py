"""Person names that spaCy's small model misses, found from how people write names down.

spaCy's ``en_core_web_sm`` knows common English names in running prose; it misses single first names it has
not seen ("Tygo", "Ulla"), names in lower case ("can u email sarah"), names with initials, and names in the
places people put them rather than in sentences: introductions, speaker labels, signatures, form fields. This
recognizer reads the spaCy doc Presidio already made (no second pass over the text) and adds PERSON spans for:

- introductions: "my name is X", "I'm X", "im x", "this is X", "X here", "call me X";
- labels: "Name: X", "Contact: X", "attn. X", "Account holder: X", "Beneficiary: X" and the like;
- titles and salutations: "Mr X", "Dr X", "Dear X,", "Hi X," (not "Dear diary", "Hi all");
- signatures: "Best,\\nX", "Regards, X", "Thanks - X", a name alone on the line after "--";
- speakers of a chat transcript as chat apps export them: "X: ..." at a line start, "[10:02] X: ...",
  "29/11/2026, 10:02 - X: ..." and "[29.11.26, 10:02:11] X: ..." (WhatsApp), "X  10:02 AM" on a line of its own
  (Slack), "X 10:02" and "[10:02] X" (Teams), "X — Today at 10:02" (Discord), "X, [29.11.2026 10:02]"
  (Telegram), "<x> ..." and "[10:02] <x_y> ..." (IRC, the nick taken whole);
- the people of a header field or meeting notes, one or a list: "From:", "To:", "Cc:", "Attendees:",
  "Present: X, Y and Z"; the writer in a quoted mail's line ("On Mon, ..., X <x@y.org> wrote:");
- @mentions: "@anna.berg", "@kenji", "@Anna" (the "@" stays; "@here", "@channel", "@all" stay whole);
- possessives and people talked about: "Priya's", "email sarah", "tell X", "with X", "me and X", "X said",
  "X wrote", "X is coming", "X will be late" (also at a sentence start, where spaCy may call X an ORG);
- the rest of a name spaCy found only part of ("Faina D." -> "Faina D. Yefremova"); a title before a name
  ("Mr", "Dr") stays in the text, it names no one;
- every other occurrence, in the same text, of a name found once ("thanks Sven" after "Sven: ...").

Whether a word is an ordinary English word (so "I'm tired", "Python here is fine" and "tell support" stay) is
read from the word lists the spaCy model ships for its lemmatizer (WordNet's index), so nothing is downloaded
and no list of names is kept: a name that is also a dictionary word ("Mark", "Grace") is taken only where the
context is strong (a label, a signature, a salutation) or where spaCy itself calls it a person.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

ENTITY = "PERSON"
# Scores: a cue-introduced name is as certain as spaCy's own PERSON (0.85); a span that grows one of spaCy's
# names by its neighbours scores a little higher, so Presidio keeps the longer span over the shorter.
CUE_SCORE = 0.85
GROWN_SCORE = 0.9
WEAK_SCORE = 0.6

# spaCy labels under which a capitalized word is something other than a person: such words are never taken
# from a weak cue ("with Lisbon" is a GPE). ORG is not among them: the small model calls many unfamiliar
# first names an ORG ("this is Ingeborg"); a brand-shaped word ("GitHub", "H&M") is never taken instead.
_NOT_PERSON_LABELS = frozenset({"PRODUCT", "GPE", "LOC", "FAC", "NORP", "LANGUAGE", "WORK_OF_ART",
                                "EVENT", "LAW", "MONEY", "QUANTITY", "CARDINAL", "ORDINAL", "PERCENT", "TIME",
                                "DATE"})

_WEEKDAYS_MONTHS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun "
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split())
# Words that open or close a message or label a field: never part of a name, even capitalized.
_CUE_WORDS = frozenset(
    "dear hi hello hey hiya yo greetings morning afternoon evening good thanks thank thx cheers regards best "
    "kind warm warmest sincerely yours truly faithfully love wishes care warmly respectfully cordially xoxo "
    "hugs bye ciao name names contact attn attention account holder beneficiary recipient subject re fwd fw "
    "cc bcc from to date phone tel mobile email mail fax address street city dob ssn card iban note notes "
    "ps tl dr here".split())
# Whom a salutation or a closing can address without naming anyone ("Dear diary", "Hi all", "Thanks again").
_NOT_ADDRESSEES = frozenset(
    "sir sirs madam madame all everyone everybody team folks guys gals friends friend colleagues colleague "
    "diary customer customers hiring manager committee there again mate mates buddy pal dude bro man "
    "you u ya y'all yall world reader readers members parents students class chat "
    "neighbours neighbors family mum mom dad mama papa grandma grandpa honey babe darling sweetie anyway "
    "in advance for both".split())
# Lower-case chat words that are not in a dictionary but are no names either ("email u", "im gonna").
_CHAT_WORDS = frozenset(
    "u ur ya yall em lol lmao rofl omg btw idk tbh imo imho pls plz thx ty tmrw tmr asap gonna wanna gotta "
    "kinda sorta dunno ok okay k kk yeah yep yup nope nah hey hi hello bro bruh dude fam gf bf bff sis hun "
    "babe rn ngl fr af tho cuz cos coz bc b4 pic pics vid vids msg msgs txt dm dms ppl smth sth sb wtf haha "
    "hahaha hehe xd ugh hmm hm mmm aww yay meh oops jk irl fyi eta w wit wif da dat dis dem ima imma ive "
    "id ill youre theyre dont cant wont didnt isnt wasnt doesnt thats whats hes shes its im iam chatgpt "
    "gpt ai app apps bot mum mom dad".split())
# Lower-case particles inside a name ("Lot van de Ven", "Maria da Silva"), only before a capitalized word.
_PARTICLES = frozenset("van von de der den del della di da dos das do du le la ter ten bin ibn al el zu y".split())
_PARTICLE_RUN = re.compile(rf"(?i:(?:{'|'.join(sorted(_PARTICLES))})[ \t]+)+(?P<last>[^\W\d_a-z])")
_TITLE_WORDS = "Mr Mrs Ms Miss Mx Dr Prof Sir Dame Herr Frau Mme Mlle Sr Sra Srta Sig Dott Mevr Dhr".split()
_TITLES = re.compile(rf"\b(?:{'|'.join(_TITLE_WORDS)})\b\.?[ \t]+")

# One word of a name: letters with inner apostrophes or hyphens ("O'Neill", "Jean-Luc"), or an initial ("D.").
_WORD = re.compile(r"[^\W\d_]+(?:(?:['’](?!s\b)|-)[^\W\d_]+)*")
_GAP = re.compile(r"[ \t]+")
_GLUED_BEFORE = re.compile(r"[\w.@/\\+-]*[@_/\\+]$|\w[.-]$")
_GLUED_AFTER = re.compile(r"[@_/\\+]|[.-]\w")
# A capital after two lower-case letters, a digit or an ampersand: a product or company ("GitHub", "ChatGPT",
# "3M", "H&M"); "McDonald", "LeBron" and "MacKenzie" are names.
_BRAND_SHAPED = re.compile(r"(?<!\bMa)[a-z]{2}[A-Z]|\d|&")

# Cues before a name. Strong cues take a capitalized dictionary word too ("Name: Grace Park"); weak cues only
# a word that is no dictionary word ("I'm Tygo", not "I'm Happy"), unless spaCy says PERSON.
_LABELS = (r"full\s+name|first\s+name|last\s+name|given\s+names?|surname|family\s+name|name|contact(?:\s+person)?|"
           r"attn\.?|attention|c/o|account\s+holder|account\s+name|card\s*holder|beneficiary|recipient|payee|"
           r"sender|signed|signature|patient|customer|client|applicant|tenant|landlord|guest|employee|"
           r"emergency\s+contact|next\s+of\s+kin|spouse|witness|author|organi[sz]er|requested\s+by|submitted\s+by|"
           r"prepared\s+by|approved\s+by|reported\s+by|assigned\s+to|from|to|cc|speaker|host|owner")
_LABEL_CUE = re.compile(
    rf"(?:^|(?<=[\n|;,(]))[ \t]*(?:{_LABELS})[ \t]*:[ \t]*"
    r"|\b(?:attn\.?|c/o|account\s+holder|card\s*holder|beneficiary|payee|per\s+pro|pp\.?)[ \t]*:?[ \t]*",
    re.IGNORECASE | re.MULTILINE)
_STRONG_CUE = re.compile(
    r"\bmy\s+name(?:'s|’s|\s+is)\s+|\b(?:known|goes|go)\s+by\s+|\bcall\s+me\s+|\bsigned,?\s+",
    re.IGNORECASE)
_WEAK_CUE = re.compile(r"\b(?:i\s+am|i['’]m|im|this\s+is|it['’]s|named|called)\s+", re.IGNORECASE)
# Salutations: the name must be followed by a comma, "!", a dash or the line's end ("Hi Lena," not "Hi Lena
# said"), except after "Dear", which is always followed by a name or a title.
_SALUTATION = re.compile(r"(?:^|(?<=[\n.!?]))[ \t]*(?:dear|hi|hello|hey|hiya|morning|good\s+morning|"
                         r"good\s+afternoon|good\s+evening|greetings|thanks|thank\s+you|thx|cheers)[ \t]*,?[ \t]+",
                         re.IGNORECASE)
_DEAR = re.compile(r"\bdear[ \t]+", re.IGNORECASE)
# Closings of a letter or mail, followed by the name on the same line or the next.
_CLOSINGS = (
    "best", "best regards", "kind regards", "warm regards", "warmest regards", "regards", "many thanks",
    "thanks", "thanks again", "thanks so much", "thanks a lot", "thank you", "thank you so much", "cheers",
    "sincerely", "yours sincerely", "sincerely yours", "yours truly", "yours faithfully", "faithfully",
    "best wishes", "all the best", "love", "lots of love", "take care", "warmly", "warm wishes", "respectfully",
    "cordially", "with thanks", "xoxo", "xx", "hugs", "talk soon", "speak soon", "see you", "bye", "ciao",
    "cheerio", "yours")
# Longest first: "best wishes" must win over "best", which would leave "wishes" where the name is looked for.
_CLOSING = re.compile(
    r"(?:^|(?<=[\n.!?,]))[ \t]*(?:"
    + "|".join(c.replace(" ", r"\s+") for c in sorted(_CLOSINGS, key=len, reverse=True))
    + r")[ \t]*(?:[,.!]|[ \t]*[-–—]+)?[ \t]*(?:\n[ \t]*)?",
    re.IGNORECASE)
# A name alone on a line after a signature separator ("--").
_SEPARATOR = re.compile(r"(?:^|(?<=\n))[ \t]*(?:--|—|–|__+)[ \t]*\n[ \t]*", re.MULTILINE)
# A name after a dash on the last line of a message ("see you then - Caoimhe").
_DASH_AT_END = re.compile(r"(?:^|(?<=[ \t\n]))[-–—]{1,2}[ \t]*(?=[^\n]*\Z)")
# A speaker label at a line start, after an optional time stamp with or without a date, as chat apps export
# them: "[10:02] Ana:", "10:02 - Ana:", "29/11/2026, 10:02 - Ana:" (WhatsApp), "[29.11.26, 10:02:11] Ana:",
# "11/29/26, 10:02 PM - ana:", "Ana:".
_STAMP_DATE = (r"(?:(?:\d{1,4}[./-]\d{1,2}[./-]\d{2,4}|\d{1,2}[ \t]+[a-z]{3,9}\.?[ \t]+\d{4}"
               r"|[a-z]{3,9}\.?[ \t]+\d{1,2},?[ \t]+\d{4}),?[ \t]+(?:at[ \t]+)?)")
_CLOCK = r"(?:\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:[ \t]*[ap]\.?m\.?)?)"
_TIMESTAMP = rf"(?:\[?{_STAMP_DATE}?{_CLOCK}\]?[ \t]*[-–]?[ \t]*)"
_SPEAKER = re.compile(rf"^[ \t]*(?P<stamp>{_TIMESTAMP})?(?P<who>[^\W\d_][^\n:]{{0,40}}?)[ \t]*:(?!//)",
                      re.MULTILINE | re.IGNORECASE)
_AFTER_SPEAKER = re.compile(r"[^\w\n]*:")
# A speaker on a line of its own above the message, with the time: "Ana Berg  10:02 AM" (Slack), "Ana Berg 10:02"
# and "[10:02] Ana Berg" (Teams), "Ana — Today at 10:02" (Discord), "Ana Berg, [29.11.2026 10:02]" (Telegram).
_HEADER_STAMP = (rf"\[?(?:(?:today|yesterday)[ \t]+at[ \t]+|{_STAMP_DATE})?{_CLOCK}\]?"
                 rf"|{_STAMP_DATE.replace(',?', '')}")
_SPEAKER_HEADER = re.compile(
    rf"^[ \t]*(?:(?P<before>\[{_CLOCK}\])[ \t]+(?P<who1>[^\W\d_][^\n\d\[\]<>:]{{0,40}}?)"
    rf"|(?P<who2>[^\W\d_][^\n\d\[\]<>:]{{0,40}}?)[ \t]*(?:,|[-–—]|[ \t])[ \t]*(?:{_HEADER_STAMP}))[ \t]*\n",
    re.MULTILINE | re.IGNORECASE)
# An IRC log: "<ana> ..." or "[10:02] <ana_b> ..." at line starts; the nick is taken whole.
_IRC_NICK = re.compile(rf"^[ \t]*(?P<stamp>\[?{_CLOCK}\]?[ \t]*)?<(?P<nick>[^\W\d][\w.|-]{{0,30}})>[ \t]",
                       re.MULTILINE)
# A field that lists people, one or many, separated by commas, ";", "&" or "and": mail headers and meeting
# notes ("Cc: Liu Yang, Ifeoma", "Attendees: ...", "Present: ... and ...").
_PEOPLE_FIELD = re.compile(
    r"^[ \t]*(?:from|to|cc|bcc|reply-to|attendees|participants|present|absent|apologies|invitees|guests|"
    r"speakers|panel(?:ists)?|hosts?|organi[sz]ers?|moderators?|chair|minutes|note[- ]?taker|facilitator|"
    r"reviewers?|approvers?|assignees?|owners?|members|team|with)[ \t]*:[ \t]*",
    re.MULTILINE | re.IGNORECASE)
_LIST_SEPARATOR = re.compile(r"[ \t]*(?:<[^<>\n]*>)?[ \t]*(?:[,;&/]|\band\b)[ \t]*", re.IGNORECASE)
# "X is coming", "X was late": a predicate said of people, after a word that is no dictionary word.
# The line above a quoted mail: "On <date>, Ana Berg <ana@x.org> wrote:", "Am <date> schrieb Ana Berg:".
_QUOTE_WHO = r"(?P<who>[^\W\d_][^\n,<>:]{0,60}?)[ \t]*(?:<[^<>\n]*>)?[ \t]*"
_QUOTE_LINES = (
    re.compile(rf",[ \t]+{_QUOTE_WHO}(?:wrote|a\s+écrit|escribió|ha\s+scritto|schreef|skrev|napisał\(a\)|napisał)"
               r"[ \t]*:[ \t]*$", re.MULTILINE | re.IGNORECASE),
    re.compile(rf"\b(?:schrieb|skrev|escreveu)[ \t]+{_QUOTE_WHO}:[ \t]*$", re.MULTILINE | re.IGNORECASE),
)
# "@handle", not inside an e-mail address ("team@example.org").
_MENTION = re.compile(r"(?<![\w.@])@(?P<handle>[^\W\d_][\w.-]{1,39})")
_NOT_MENTIONS = frozenset("channel here everyone all team room group admins admin mods mod bot".split())
_MARKUP_TAGS = frozenset(
    "a abbr b body br button code dd div dl dt em footer form head header html i img input label li link meta "
    "nav ol option p pre script section select small span strong style sub sup table tbody td textarea th tr "
    "u ul svg path g rect xml".split())
_BE = frozenset("is was 's ’s will isn't wasn't has".split())
_PERSON_PREDICATES = frozenset(
    "coming going visiting staying arriving leaving late sick ill pregnant moving away home back here asleep "
    "awake off joining bringing driving picking cooking hosting babysitting".split())
_SENTENCE_START = re.compile(r"(?:\A|[\n.!?:\"“(])[ \t]*\Z")
# "X here" starts a line or follows a greeting ("Hi! Yusuf here").
_BEFORE_HERE = re.compile(r"(?:\A|\n|\b(?:hi|hey|hello|hiya|yo|ok|so|morning)[ \t]*[,!]?)[ \t]*\Z", re.IGNORECASE)
# Verbs and words after which a lower-case word can be a person ("email sarah", "meet agnieszka").
_PERSON_VERBS = frozenset(
    "email e-mail mail tell told ask asked call called ring text texted txt message messaged msg dm ping pinged "
    "meet met invite invited thank thanked remind reminded visit visited hug miss missed cc "
    "marry married date dating".split())
# Verbs after which a word is a person rather than a company ("Kenji said"; "Brightwave called" may be either).
_SAYING_VERBS = frozenset(
    "said says told tells asked asks texted texts thinks thought replied wants wanted loves hates likes "
    "reckons wrote writes".split())
# Of these, only people do them: a word spaCy calls an ORG is a person here ("Ines said", "Ines thinks").
_ONLY_PEOPLE_VERBS = frozenset("said says thinks thought reckons loves hates wants wanted feels felt".split())
# Verbs after a lower-case word that is no dictionary word: a person in chat ("lena just sent me"); companies
# are seldom written in lower case.
_DOING_VERBS = _SAYING_VERBS | frozenset(
    "sent sends called calls gave gives invited wrote writes posted mentioned".split())
# "with" names a person after these ("lunch with Tygo"), not after "help" or "deployed it" ("with Kubernetes").
_WITH_PEOPLE = frozenset(
    "meet met meeting talk talked talking speak spoke speaking chat chatted chatting lunch dinner coffee drinks "
    "date out hang hanging live living lives lived married fight fighting fought argue arguing argued broke "
    "up friends plans call went go going stay staying stayed share sharing shared along together cinema movies "
    "movie film party trip holiday vacation gym walk run game games concert festival dancing shopping "
    "travelling traveling camping hiking".split())
# A word "to", "for" or "from" a person after these ("a note to Eckard", "a gift for Ama"), not after "upgrade"
# or "migrate" ("to Ubuntu").
_FOR_PEOPLE = frozenset(
    "note card letter message email mail text gift present poem speech toast apology invitation invite reply "
    "answer write send give say talk speak introduce thank thanks hello hi greetings wishes birthday "
    "love kiss hug goodbye sorry news visit present flowers".split())
_ADVERBS = frozenset("just also really never finally already still always".split())


class NameRecognizer(EntityRecognizer):
    """PERSON spans from introductions, labels, signatures, speaker labels and the words around spaCy's names."""

    def __init__(self) -> None:
        super().__init__(supported_entities=[ENTITY], name="NameRecognizer", supported_language="en")
        self._words: frozenset[str] | None = None
        self._words_lock = threading.Lock()

    def load(self) -> None:
        """Nothing to load here: the dictionary comes from the spaCy model, on the first text (see _lexicon)."""

    # The dictionary ----------------------------------------------------------------------------------------

    def _lexicon(self, nlp_artifacts: Any) -> frozenset[str]:
        if self._words is None:
            with self._words_lock:
                if self._words is None:
                    self._words = english_words(nlp_artifacts.nlp_engine.nlp["en"])
        return self._words

    # Analysis ----------------------------------------------------------------------------------------------

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if ENTITY not in entities or nlp_artifacts is None or nlp_artifacts.tokens is None:
            return []
        found = _Finder(text, nlp_artifacts.tokens, self._lexicon(nlp_artifacts)).find()
        return [RecognizerResult(ENTITY, start, end, score,
                                 recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                       RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                for start, end, score in found]


def english_words(nlp: Any) -> frozenset[str]:
    """Lower-case English words: the spaCy model's lemmatizer index and exceptions, and its stop words."""
    words: set[str] = set(nlp.Defaults.stop_words)
    try:
        lookups = nlp.get_pipe("lemmatizer").lookups
    except KeyError:  # a model without a lemmatizer: stop words only, so fewer weak cues are trusted
        return frozenset(words)
    for table_name in ("lemma_index", "lemma_exc"):
        if lookups.has_table(table_name):
            for entries in lookups.get_table(table_name).values():
                words.update(w for w in entries if "_" not in w)
    return frozenset(words)


class _Finder:
    """The spans of one text (character offsets, score), built from its spaCy doc."""

    def __init__(self, text: str, doc: Any, words: frozenset[str]) -> None:
        self.text = text
        self.doc = doc
        self.words = words
        self.spans: list[tuple[int, int, float]] = []
        # Characters spaCy labeled as something other than a person (an ORG, a place, a date).
        self.other: list[tuple[int, int]] = [(e.start_char, e.end_char) for e in doc.ents
                                             if e.label_ in _NOT_PERSON_LABELS]
        self.persons = [(e.start_char, e.end_char) for e in doc.ents if e.label_ == "PERSON"]
        self.tags = {t.idx: t.tag_ for t in doc}

    # Words -------------------------------------------------------------------------------------------------

    def is_word(self, word: str) -> bool:
        """An ordinary English word (or an inflection of one): "tired", "support", "burns"."""
        w = word.casefold().replace("’", "'")
        if w in self.words or w in _CHAT_WORDS:
            return True
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""),
                             ("ing", "e"), ("ly", ""), ("'s", "")):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3 and w[: len(w) - len(suffix)] + repl in self.words:
                return True
        return False

    def never_name(self, word: str) -> bool:
        w = word.casefold()
        return w in _CUE_WORDS or w in _WEEKDAYS_MONTHS or w in _NOT_ADDRESSEES or w in _STOP

    def spacy_other(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self.other) or bool(_BRAND_SHAPED.search(self.text, start, end))

    def found(self, pos: int) -> bool:
        """Whether a span found so far, or a person or place of spaCy's, covers ``pos``."""
        return any(s <= pos < e for s, e, _ in self.spans) or any(
            e.start_char <= pos < e.end_char for e in self.doc.ents if e.label_ in ("PERSON", "GPE"))

    def spacy_person(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self.persons)

    # Reading a name at a position -------------------------------------------------------------------------

    def name_at(self, pos: int, *, strong: bool, lower: bool = False, max_words: int = 4) -> tuple[int, int] | None:
        """The name starting at ``pos``: capitalized words, initials and inner particles, on one line.

        ``strong``: the first word may be a dictionary word ("Name: Grace Park"); otherwise it must not be
        one, unless spaCy called it a person. ``lower``: a lower-case word that is no dictionary word is a
        name too ("im dave"), alone.
        """
        text = self.text
        words: list[tuple[int, int]] = []
        i = pos
        while len(words) < max_words:
            if words:
                gap = _GAP.match(text, i)
                if gap is None:
                    break
                i = gap.end()
            m = _WORD.match(text, i)
            if m is None:
                break
            word = m.group()
            if m.end() < len(text) and text[m.end()] == "." and len(word) == 1 and word.isupper():
                words.append((m.start(), m.end() + 1))  # an initial: "J." (followed by more of the name)
                i = m.end() + 1
                continue
            if word.casefold() in _PARTICLES and words:
                # "van", "de la": inside a name only when a capitalized word follows ("Lot van de Ven")
                follow = _PARTICLE_RUN.match(text, m.start())
                if follow and len(words) + follow.group().count(" ") < max_words + 2:
                    words.append((m.start(), m.start() + len(follow.group()[:-1].rstrip())))
                    i = words[-1][1]
                    continue
                break
            if word[0].isupper():
                if word in _TITLE_WORDS or len(word) == 1 or re.split("['’]", word.casefold())[0] in _STOP:
                    break  # a title, "I", "I'd", "We'll"
                if word.casefold() in _CUE_WORDS or word.casefold() in _WEEKDAYS_MONTHS or (
                        word.casefold() in _NOT_ADDRESSEES):
                    break
                if not words and not strong and self.is_word(word) and not self.spacy_person(m.start(), m.end()):
                    break
                if words and self.is_word(word) and self.tags.get(m.start(), "NNP") not in ("NNP", "NNPS") \
                        and not strong:
                    break
                words.append((m.start(), m.end()))
                i = m.end()
                continue
            if lower and not words and not self.is_word(word) and len(word) >= 3 and word.isalpha():
                words.append((m.start(), m.end()))
                i = m.end()
                # A lower-case surname after a lower-case first name ("dave smith") is left alone: it is as
                # likely an ordinary word that spaCy does not know.
                break
            break
        # Trailing initials or particles are no part of the name ("Anna B." keeps the initial, "van" does not).
        while words and text[words[-1][0]:words[-1][1]].casefold() in _PARTICLES:
            words.pop()
        if not words:
            return None
        return words[0][0], words[-1][1]

    def add(self, span: tuple[int, int] | None, score: float = CUE_SCORE) -> None:
        if span is None or span[1] <= span[0]:
            return
        # Part of an e-mail address, a user name or a path ("maria.lopez@...", "zoe_w"): left to the
        # recognizers of those, which take the whole.
        if _GLUED_BEFORE.search(self.text, 0, span[0]) or _GLUED_AFTER.match(self.text, span[1]):
            return
        if _BRAND_SHAPED.search(self.text, span[0], span[1]):
            return
        self.spans.append((span[0], span[1], score))

    # Rules -------------------------------------------------------------------------------------------------

    def find(self) -> list[tuple[int, int, float]]:
        text = self.text
        for m in _LABEL_CUE.finditer(text):
            self.add(self.name_at(m.end(), strong=True, lower=True))
        for m in _STRONG_CUE.finditer(text):
            self.add(self.name_at(m.end(), strong=True, lower=True))
        for m in _WEAK_CUE.finditer(text):
            about_me = m.group().lower().startswith(("im", "i'm", "i’m", "i am"))
            span = self.name_at(m.end(), strong=False, lower=about_me)
            if span is None and about_me:
                # "I'm Dag, ...": a capitalized dictionary word that spaCy tags as a proper noun, standing alone
                span = self.name_at(m.end(), strong=True, max_words=1)
                if span and not (self.tags.get(span[0]) in ("NNP", "NNPS")
                                 and re.match(r"[ \t]*(?:[,.!]|$)", text[span[1]:])):
                    span = None
            if span and not self.spacy_other(*span):
                self.add(span)
        for m in _TITLES.finditer(text):
            # The title stays ("Dear Mr <PERSON_1>"): it names no one, and "Mr Okafor" and "Okafor" stay one
            # person.
            self.add(self.name_at(m.end(), strong=True))
        for m in _DEAR.finditer(text):
            self.add(self.name_at(m.end(), strong=True))
        for m in _SALUTATION.finditer(text):
            span = self.name_at(m.end(), strong=True, lower=True)
            if span and re.match(r"[ \t]*(?:[,!:]|[-–—]|\n|$)", text[span[1]:]):
                self.add(span)
        for m in _CLOSING.finditer(text):
            span = self.name_at(m.end(), strong=True, lower=True)
            if span and re.match(r"[ \t]*(?:[,.!]|\n|$)", text[span[1]:]):
                self.add(span)
        for m in _SEPARATOR.finditer(text):
            span = self.name_at(m.end(), strong=True)
            if span and re.match(r"[ \t]*(?:\n|$)", text[span[1]:]):
                self.add(span)
        for m in _DASH_AT_END.finditer(text):
            # weak: the last line of a list ("- Groceries") is no signature
            span = self.name_at(m.end(), strong=False)
            if span and re.match(r"[ \t]*[.!]?[ \t]*$", text[span[1]:]):
                self.add(span)
        self._full_names()
        self._speakers()
        self._speaker_headers()
        self._irc_nicks()
        self._people_fields()
        self._quoted_mail()
        self._mentions()
        self._here()
        self._around_words()
        self._grow_spacy_names()
        self._echo()
        return self.spans

    def _full_names(self) -> None:
        """Two or more capitalized words in a row that are no dictionary words: a full name ("Rozalia Ciepłuch"),
        which spaCy often calls an ORG or nothing at all."""
        tokens = list(self.doc)
        unknown = [self._unknown_proper(t) for t in tokens]
        k = 0
        while k < len(tokens) - 1:
            run = k
            while run < len(tokens) and unknown[run]:
                run += 1
            if run - k >= 2:
                span = (tokens[k].idx, tokens[run - 1].idx + len(tokens[run - 1].text))
                if "\n" not in self.text[span[0]:span[1]] and not self.spacy_other(*span):
                    self.add(self.name_at(span[0], strong=True) or span, WEAK_SCORE)
            k = max(run, k + 1)

    def _unknown_proper(self, tok: Any) -> bool:
        word = tok.text
        return (tok.tag_ in ("NNP", "NNPS") and _WORD.fullmatch(word) is not None and len(word) > 1
                and word[0].isupper() and not word.isupper() and not self.never_name(word)
                and not self.is_word(word))

    def _speakers(self) -> None:
        """Speaker labels: names at line starts before a colon, in a text that reads as a transcript."""
        text = self.text
        labels: list[tuple[tuple[int, int], str, bool, bool]] = []  # span, label, time stamp, name-like
        for m in _SPEAKER.finditer(text):
            who_start = m.start("who")
            span = self.name_at(who_start, strong=True, lower=True, max_words=3)
            # an emoji or a symbol may follow the name ("maya 🌸:", "Jo ✈️:"), never another word
            if span is None or span[0] != who_start or not _AFTER_SPEAKER.fullmatch(text, span[1], m.end()):
                continue
            first = _WORD.match(text, span[0])
            if first is None:
                continue
            word = first.group()
            # A field label ("Email:", "Note:", "Update:") is a dictionary word; an acronym ("TODO:", "NB:")
            # is none either.
            unknown = not self.is_word(word) and not word.isupper()
            labels.append((span, text[span[0]:span[1]].casefold(), bool(m.group("stamp")),
                           unknown or self.spacy_person(*span)))
        if not labels:
            return
        # A transcript: time stamps, a speaker who speaks twice, or just two speakers, each once. A list of
        # three or more different labels, each once, is a glossary or a form ("Kubernetes: ...\nTerraform:
        # ...\nAnsible: ..."), and one label alone is a field ("Ubuntu: 24.04").
        counts = Counter(name for _span, name, _stamp, _name_like in labels)
        repeated = any(n > 1 for n in counts.values())
        transcript = (any(stamp for _span, _name, stamp, _name_like in labels)
                      or (repeated and any(name_like for *_rest, name_like in labels))
                      or (len(counts) == 2 and all(name_like for *_rest, name_like in labels)))
        if transcript:
            # Then every label is a speaker ("Sander:" once, next to "Isabelle:" twice), but never a field
            # label such as "Name" or "Email" (cue words).
            for span, name, _stamp, _name_like in labels:
                if not self.never_name(name.split()[0]):
                    self.add(span)

    def _speaker_headers(self) -> None:
        """Speakers on a line of their own with the time ("Ana Berg  10:02 AM", "[10:02] Ana Berg", "Ana — Today at
        10:02", "Ana, [29.11.2026 10:02]"): two or more such lines, one of them name-like, make a transcript."""
        text = self.text
        labels: list[tuple[tuple[int, int], str, bool]] = []
        for m in _SPEAKER_HEADER.finditer(text):
            group = "who1" if m.group("who1") else "who2"
            who_start, who = m.start(group), m.group(group).rstrip()
            span = self.name_at(who_start, strong=True, lower=True, max_words=3)
            if span != (who_start, who_start + len(who)):
                continue
            words = text[span[0]:span[1]].split()
            if self.never_name(words[0]):
                continue
            name_like = any(not self.is_word(w) for w in words) or self.spacy_person(*span)
            labels.append((span, text[span[0]:span[1]].casefold(), name_like))
        # Two name-like labels at least: one unknown word over a schedule ("Standup 10:00") makes no transcript.
        if sum(name_like for *_rest, name_like in labels) < 2:
            return
        # A schedule ("Lunch 12:30", "Review 15:00") has dictionary words only: those stay unless they repeat.
        counts = Counter(name for _span, name, _name_like in labels)
        for span, name, name_like in labels:
            if name_like or counts[name] > 1:
                self.add(span)

    def _irc_nicks(self) -> None:
        """Nicks of an IRC log ("<ana> ...", "[10:02] <ana_b> ..."), taken whole: on two lines or more, or with a
        time stamp; never an HTML or XML tag ("<div> ...") or a dictionary word that is said once."""
        text = self.text
        found = [m for m in _IRC_NICK.finditer(text) if m.group("nick").casefold() not in _MARKUP_TAGS]
        if not found or (len(found) < 2 and not found[0].group("stamp")):
            return
        counts = Counter(m.group("nick").casefold() for m in found)
        if not any(not self.is_word(m.group("nick")) for m in found):
            return
        for m in found:
            nick = m.group("nick")
            if not self.is_word(nick) or counts[nick.casefold()] > 1:
                # Appended as it is: a nick is a user name, which may have digits or underscores.
                self.spans.append((m.start("nick"), m.end("nick"), CUE_SCORE))

    def _people_fields(self) -> None:
        """The people listed after "From:", "Cc:", "Attendees:", "Present:" and the like, one after another:
        each a name that spaCy calls a person or with a word that is no dictionary word ("Cc: Sales" stays)."""
        text = self.text
        for m in _PEOPLE_FIELD.finditer(text):
            pos = m.end()
            for _ in range(20):
                span = self.name_at(pos, strong=True, lower=True)
                if span is None:
                    break
                words = text[span[0]:span[1]].split()
                if not (self.spacy_person(*span) or any(not self.is_word(w) for w in words)) \
                        or self.spacy_other(*span):
                    break
                end = re.match(r"[ \t]*(?:<[^<>\n]*>)?[ \t]*(?:\n|$)", text[span[1]:])
                sep = _LIST_SEPARATOR.match(text, span[1])
                if end is None and sep is None:
                    break
                self.add(span)
                if end is not None or sep is None:
                    break
                pos = sep.end()

    def _mentions(self) -> None:
        """@mentions of people ("@anna.berg", "@kenji", "@Anna"), the handle taken whole and the "@" left: a
        handle with a dot or an underscore, one that is no dictionary word, or a capitalized one; never "@here",
        "@all", "@channel" or "@everyone"."""
        text = self.text
        for m in _MENTION.finditer(text):
            handle = m.group("handle").rstrip(".-")
            if self.never_name(handle) or handle.casefold() in _NOT_MENTIONS:
                continue
            if re.search(r"[^\W\d_][._][^\W\d_]", handle) or not self.is_word(handle) or handle[0].isupper():
                # over spaCy, which calls "@anna.berg" a place
                self.spans.append((m.start("handle"), m.start("handle") + len(handle), GROWN_SCORE))

    def _quoted_mail(self) -> None:
        """The writer of a quoted mail: "On Mon, 3 Mar 2025 at 10:02, Ana Berg <ana@x.org> wrote:" and the same
        line in other mail programs' languages."""
        text = self.text
        for m in (m for pattern in _QUOTE_LINES for m in pattern.finditer(text)):
            span = self.name_at(m.start("who"), strong=True, lower=True)
            if span == (m.start("who"), m.start("who") + len(m.group("who").rstrip())):
                self.add(span)

    def _here(self) -> None:
        """ "Tygo here, ..." at a line start or after a greeting: the name, when "here" stands alone."""
        text = self.text
        for m in re.finditer(r"\bhere\b", text, re.IGNORECASE):
            before = text[:m.start()].rstrip(" \t")
            word = re.search(r"([^\W\d_]+(?:['’-][^\W\d_]+)*)$", before)
            if word is None:
                continue
            # Walk back over up to two more name words ("Anna Berg here").
            start = word.start(1)
            for _ in range(2):
                prev = re.search(r"([^\W\d_]+)[ \t]+$", text[:start])
                if prev and prev.group(1)[0].isupper() and not self.never_name(prev.group(1)):
                    start = prev.start(1)
                else:
                    break
            if not _BEFORE_HERE.search(text, max(0, start - 16), start):
                continue
            alone = re.match(r"[ \t]*(?:[,.!:;—–-]|\n|$)", text[m.end():]) is not None
            span = self.name_at(start, strong=alone, lower=True)
            if span and span[1] == word.end(1):
                self.add(span)

    def _around_words(self) -> None:
        """People talked about: after "email", "tell", "with", "me and"; before "said"; possessives."""
        tokens = list(self.doc)
        for k, tok in enumerate(tokens):
            word = tok.text
            if not _WORD.fullmatch(word) or self.never_name(word) or len(word) < 2:
                continue
            prev = tokens[k - 1].text.casefold() if k else ""
            nxt = tokens[k + 1].text if k + 1 < len(tokens) else ""
            nxt2 = tokens[k + 2].text.casefold() if k + 2 < len(tokens) else ""
            span = (tok.idx, tok.idx + len(word))
            if self.spacy_other(*span) or self.is_word(word):
                continue
            capital = word[0].isupper()
            # "Ngozi's flat", not "at Nando's" (a place)
            possessive = nxt in ("'s", "’s", "'", "’") and prev not in ("at", "in", "from", "to")
            before = tokens[k - 2].text.casefold() if k > 1 else ""
            # "me and Tomasz", "Tomasz and I": "and" alone joins anything ("React and Django").
            # "Zeynep and Emre", "Ngaire and Rawiri": after a name found by spaCy or above (spaCy may call it
            # a place), a capitalized unknown word is a name too.
            after_person = k > 1 and (self.spacy_person(tokens[k - 2].idx, tokens[k - 2].idx + 1) or (
                capital and self.found(tokens[k - 2].idx) and not self.is_word(tokens[k - 2].text)))
            after_verb = (prev in _PERSON_VERBS or (prev == "with" and before in _WITH_PEOPLE)
                          or (prev == "and" and (before in ("me", "i") or after_person))
                          or (prev in ("to", "from", "for") and capital and any(
                              t.lower_ in _FOR_PEOPLE or t.lemma_ in _FOR_PEOPLE for t in tokens[max(0, k - 4):k])))
            verbs = _SAYING_VERBS if capital else _DOING_VERBS
            saying = (nxt.casefold() in verbs or (nxt.casefold() in _ADVERBS and nxt2 in verbs)
                      or (nxt.casefold() == "and" and nxt2 in ("i", "me")))
            nxt3 = tokens[k + 3].text.casefold() if k + 3 < len(tokens) else ""
            # "Tomasz is coming", "Ama will be late"
            predicate = capital and nxt.casefold() in _BE and (
                nxt2 in _PERSON_PREDICATES or (nxt2 == "be" and nxt3 in _PERSON_PREDICATES))
            only_people = capital and (nxt.casefold() in _ONLY_PEOPLE_VERBS or predicate)
            saying = saying or predicate
            if capital and k > 0 and tokens[k - 1].text not in (".", "!", "?", "\n") and not tokens[k - 1].is_space \
                    and (after_verb or possessive or saying):
                self.add(self.name_at(tok.idx, strong=True) or span, WEAK_SCORE)
            elif capital and (possessive or saying) and (
                    (tok.tag_ in ("NNP", "NNPS") and tok.ent_type_ != "ORG")
                    # a word the tagger does not know as a proper noun ("Ines" NNS, "Tomasz" NN), which spaCy
                    # may still call an ORG; "Microsoft said" (NNP, ORG) stays
                    or (only_people and tok.tag_ in ("NN", "NNS"))):
                # At a sentence start, a company acts as often as a person ("Brightwave called"): spaCy's
                # ORG is trusted here.
                self.add(self.name_at(tok.idx, strong=True) or span, WEAK_SCORE)
            elif not capital and word.isalpha() and len(word) >= 3 and (after_verb or saying or possessive) \
                    and (tok.tag_ in ("NN", "NNP", "NNS", "JJ") or after_verb) \
                    and nxt.casefold() not in ("of",):
                self.add(span, WEAK_SCORE)

    def _grow_spacy_names(self) -> None:
        """spaCy's PERSON spans, grown over the name words next to them on the same line."""
        text = self.text
        for start, end in self.persons:
            grown_start, grown_end = start, end
            while True:  # leftwards: capitalized name words that are no dictionary words ("Faina D." <- "Anna")
                prev = re.search(r"(?:^|(?<=[ \t]))([^\W\d_]+(?:-[^\W\d_]+)*)[ \t]+$", text[:grown_start])
                if prev is None:
                    break
                word = prev.group(1)
                if (len(word) > 1 and word[0].isupper() and not self.never_name(word) and not self.is_word(word)
                        and self.tags.get(prev.start(1)) in ("NNP", "NNPS")
                        and not self.spacy_other(prev.start(1), prev.end(1))):
                    grown_start = prev.start(1)
                    continue
                break
            gap = _GAP.match(text, grown_end)
            if gap is not None and self.tags.get(gap.end()) in ("NNP", "NNPS"):
                # rightwards: the rest of the name on the line ("Colton J." -> "Colton J. Burns")
                nxt = self.name_at(gap.end(), strong=True)
                if nxt and not self.spacy_other(*nxt):
                    grown_end = nxt[1]
            if (grown_start, grown_end) != (start, end):
                self.add((grown_start, grown_end), GROWN_SCORE)

    def _echo(self) -> None:
        """Every other occurrence in this text of a word of a name found above or by spaCy."""
        text = self.text
        names: set[str] = set()
        for start, end in [*[(s, e) for s, e, _ in self.spans], *self.persons]:
            for word in re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)*", text[start:end]):  # as spaCy splits "-"
                if len(word) >= 2 and not self.never_name(word) and word.casefold() not in _PARTICLES \
                        and not _TITLES.match(word + " "):
                    names.add(word)
        if not names:
            return
        exact = {w for w in names if self.is_word(w)}
        folded = {w.casefold() for w in names if w not in exact}
        for tok in self.doc:
            word = tok.text
            if word in exact:
                # A name that is also a word ("Will", "Grace") only in its case and not opening a sentence,
                # where any word is capitalized ("Will you ...").
                if _SENTENCE_START.search(text, max(0, tok.idx - 8), tok.idx):
                    continue
            elif word.casefold() not in folded:
                continue
            span = (tok.idx, tok.idx + len(word))
            if not self.spacy_other(*span) and not (tok.idx and text[tok.idx - 1] == "<"):
                self.add(span, CUE_SCORE)


def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


_STOP = _stop_words()
