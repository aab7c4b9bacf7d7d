"""Street addresses and P.O. boxes as they are written in many countries, with what is written with them.

An address is found from an anchor and then extended over its tail:

- anchors: a street with its house number, the number before or after it ("12 Baker Street", "Via Roma 12",
  "ul. Długa 5/7", "Calle Mayor, 3", "43, rue de la Paix", "Király u. 15.", "Præstevænget 15"), where the
  street is named by a word for street in one of many languages (a word of its own, "rue", "utca", "Road",
  or the end of a compound, "-straße", "-gatan", "-laan"); a P.O. box ("P.O. Box 123", "Postfach 12");
- the tail: apartment, suite or floor, postal code and city, region and country, separated by commas, spaces
  or line breaks (a line of a letter's address block joins only when it holds a postal code, a unit or a
  country: a greeting on the next line is not a city).

A house number with capitalized words and no street word ("27 Mulberry Fields", "Husova 12", "Box 12")
is an address only when the tail confirms it (a postal code, a unit, a country) or an address word stands
just before it ("lives at", "address:", "ship to"): "I read chapter 3, Rome" and "Route 66 was fun" stay.
A city alone is never taken here (spaCy's LOCATION finds places by name).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import regex

# Apartment, suite, floor, door: "Apt 4B", "Suite 200", "Flat No. 3", "Level 2", "Piso 2", "ap. 15", "bl. A3".
_UNIT_WORDS = (
    "apt|apartment|appt|suite|ste|unit|flat|floor|fl|level|lvl|room|rm|studio|office|shop|bldg|building|piso|"
    "puerta|pta|escalera|esc|planta|piano|interno|int|scala|appartamento|app|étage|etage|bât|bâtiment|"
    "appartement|wohnung|whg|stock|lok|lokal|(?-i:m\\.)|mieszkanie|andar|apto|ap|sala|bloco|bl|bloc|sc|scara|"
    "et|etaj|apartament|sector|casa|lote|lt|torre|door|bus|emelet|em|ajtó|lph|lépcsőház|byt|no|nr|nº|n°|#"
)
# The word or sign for "number" before a house number: "Strada Lipscani nr. 5", "Rua Augusta, n.º 12".
_NUMBER_WORD = r"(?:(?i:nr|no|n|n\.º|nº|n°|núm|num|número|numero|číslo|č)\.?[ \t]?)?"
# A capitalized word, in any script with case: "McCarthy", "Żwirki", "Saint-Étienne", "O'Neill", or an ordinal
# ("5th Avenue", "W 42nd St"); not a unit with its number ("Suite 5" ends the street's name), nor a region
# code before a postal code ("AZ 85001").
_CAP = (rf"(?!(?i:{_UNIT_WORDS}|box)\.?[ \t]?(?:no\.?[ \t]?)?#?\d|[A-Z]{{2,3}}[ \t]+\d)"
        r"(?:\p{Lu}[\p{L}'’]*(?:-\p{L}[\p{L}'’]*)*(?![\p{L}\d'’])|\d{1,3}(?:st|nd|rd|th)(?![\w]))")
# Small words inside street and place names ("rue de la Paix", "plac Żwirki i Wigury", "Stratford upon Avon").
_LINK = (r"(?:de|da|do|dos|das|del|dels|della|delle|degli|dei|di|du|des|d'|l'|la|le|les|lo|el|los|las|van|der|"
         r"den|ter|von|zu|zum|zur|am|an|auf|im|in|i|y|e|et|sur|sous|on|upon|of|the|and)")
# A name of up to six words (a street's name, a city, a country); more than _MAX_NAME_WORDS is no address.
_NAME = rf"{_CAP}(?:[ \t]+(?:{_LINK}[ \t]+){{0,2}}(?:{_CAP}|\d{{1,3}}[ªº°])){{0,5}}"
# A city's district number ("Praha 3", "Wien 1"), kept with the city.
_DISTRICT = r"(?:[ \t]\d{1,2}(?![\w.,:/-]))?"
# A house number: "12", "12a", "12 B", "5/7", "6-7", "87." (Hungarian), "nr. 5", never part of a time or a decimal.
_HN = r"\d{1,5}[ \t]?(?:[a-zA-Z](?![\p{L}]))?(?:[ \t]?[/-][ \t]?\d{1,5}[a-zA-Z]?(?![\p{L}]))?\.?"
_HOUSE = rf"(?<![\w.,/:-]){_NUMBER_WORD}{_HN}(?![\w:/]|[.,]\d)"

# Words for street written before the name ("rue de Rivoli", "Via Roma", "ul. Długa", "Avenida Paulista").
_PREFIX_TYPES = (
    # French, Belgian, Swiss
    "rue|avenue|av|boulevard|bd|bld|bvd|chemin|ch|impasse|imp|allée|place|quai|route|rte|cours|passage|square|"
    "sentier|voie|faubourg|fbg|esplanade|promenade|cité|résidence|lieu-dit|hameau|"
    # Italian
    "via|viale|v\\.le|piazza|p\\.za|piazzale|corso|c\\.so|largo|vicolo|strada|contrada|località|loc|borgo|"
    "lungomare|lungotevere|salita|vico|rotonda|"
    # Spanish, Catalan
    "calle|c/|avenida|avda|paseo|plaza|pza|camino|carretera|ctra|ronda|travesía|glorieta|callejón|pasaje|"
    "rambla|urbanización|urb|carrer|passeig|plaça|avinguda|cuesta|acceso|cañada|"
    # Portuguese, Brazilian
    "rua|r|travessa|tv|praça|pça|praceta|alameda|estrada|rodovia|beco|ladeira|viela|vila|quadra|calçada|caminho|"
    "rampa|azinhaga|quinta|rotunda|urbanização|condomínio|conjunto|loteamento|residencial|setor|chácara|sítio|"
    "fazenda|vereda|"
    # Polish, Czech, Slovak, Romanian
    "ul|ulica|al|aleja|aleje|pl|plac|os|osiedle|ulice|náměstí|nám|třída|nábřeží|nábř|"
    "str|strada|bulevardul|bdul|b-dul|calea|șoseaua|soseaua|aleea|piața|piata|intrarea|splaiul|drumul|"
    "fundătura|prelungirea|pasajul"
)
# Words for street written after the name, the house number before it ("12 Baker Street", "933, MG Road").
_SUFFIX_BEFORE = (
    "street|st|avenue|ave|av|road|rd|lane|ln|boulevard|blvd|drive|dr|court|ct|way|place|pl|terrace|tce|square|"
    "sq|parkway|pkwy|highway|hwy|crescent|cres|close|row|alley|gardens|gdns|grove|hill|mews|park|rise|walk|green|"
    "circle|cir|trail|trl|path|loop|plaza|vale|view|heights|hts|wharf|quay|parade|pde|embankment|gate|yard|"
    "cove|glen|meadows?|ridge|pike|turnpike|expressway|freeway|marg|nagar|chowk|ganj|colony|bazar|bagh|cross"
)
# Words for street written after the name, the house number after it ("Király utca 15.", "Berliner Straße 5").
_SUFFIX_AFTER = ("utca|u(?=\\.)|út|útja|tér|tere|körút|krt|köz|sor|sétány|fasor|rakpart|dűlő|sugárút|lejtő|udvar|"
                 "liget|sokak|sokağı|cadde|"
                 "caddesi|bulvarı|straße|strasse|str|weg|allee|platz|gasse|damm|ufer|chaussee|(?-i:gate)|"
                 "street|road|avenue|lane|gatan|vägen|vej|gade|veien|vei|straat|laan")
# The ends of compound street names ("Gießstraße", "Kyrkgatan", "Prinsengracht", "Præstevænget").
_COMPOUND_ENDS = (
    # (not "-ring" or "-gate": "Gathering 2024", "Stargate 2")
    "straße|strasse|str\\.|weg|gasse|platz|allee|damm|ufer|chaussee|steig|pfad|markt|graben|"
    "straat|laan|gracht|plein|kade|dijk|singel|dreef|steeg|hof|baan|boulevard|"
    "vej|gade|vænget|vang|stræde|plads|allé|"
    "gatan|gata|vägen|väg|gränd|stigen|stig|torget|torg|backen|allén|leden|"
    "veien|vei|gaten|veg|"
    "katu|tie|kuja|polku|tori"
)
_COMPOUND = regex.compile(rf"\p{{Lu}}[\p{{L}}-]{{2,}}(?i:{_COMPOUND_ENDS})")
_UNIT = (rf"(?:(?i:{_UNIT_WORDS})\.?[ \t]?(?:(?i:no|nr)\.?[ \t]?)?#?[ \t]?\d{{1,5}}[\p{{L}}]?(?![\w])"
         rf"|(?i:{_UNIT_WORDS})\.?[ \t]?[A-Z]\d{{0,3}}(?![\w])"
         # the Portuguese ground floor ("r/c"), Danish floor and side ("2. th."), floors ("3rd floor", "2. emelet")
         r"|(?i:r/c|\d{1,2}\.[ \t]?(?:th|tv|mf|sal))\.?(?![\w])"
         r"|\d{1,3}(?i:st|nd|rd|th|\.?º|\.?ª|e|er|ème|\.)?[ \t]?(?i:floor|fl|andar|étage|etage|piso|piano|stock|og|"
         r"emelet|em|ajtó)\.?(?![\w])"
         # Spanish and Portuguese floor and door ("2º B", "3.º Esq.")
         r"|\d{1,2}\.?[º°ª](?:[ \t]?(?:[A-Z](?![\w])|(?i:esq|dto|dt|dir|izq|izda|dcha|dcho|frente|trás)\.?))?"
         r"|(?i:[1-9]\.?[ \t]?(?:og|eg|ug|dg)|dcha|izq|izda|esq)\.?(?![\w]))")
# Postal codes: US ZIP(+4), UK, Canada, Ireland, the Netherlands, Poland, Portugal, Brazil, Sweden and
# Czechia, Japan, India, a country letter before the code (H-1051, D-10115, CH-8001), and 4 to 6 digits.
_POSTAL = (r"(?:\d{5}-\d{4}|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d|[A-Z]\d\d[ \t]?"
           r"[A-Z\d]{4}|\d{4}[ \t]?[A-Z]{2}|\d{2}-\d{3}|\d{4}-\d{3}|\d{5}-?\d{3}|\d{3}[ \t]\d{2}|\d{3}-\d{4}|"
           r"\d{3}[ \t]\d{3}|[A-Z]{1,2}-\d{4,5}|\d{4,6})")
_POSTAL_END = r"(?![\w@.,/:-]\w|\w)"
# "(PZ)" after an Italian city, "/ BA" after a Brazilian one, a US state or Australian territory and ZIP.
_REGION = r"(?:[ \t]*\([A-Z]{2,3}\)|[ \t]*[/-][ \t]*[A-Z]{2}(?![\w]))"
_PO_BOX = (r"(?:(?i:p\.?[ \t]?o\.?[ \t]?box|post[ \t]+office[ \t]+box|postfach|postbus|postboks|boîte[ \t]+postale|"
           r"b\.p\.|apartado(?:[ \t]+de[ \t]+correos)?|caixa[ \t]+postal|casella[ \t]+postale|"
           r"skrytka[ \t]+pocztowa|box)\.?[ \t]?(?:no\.?[ \t]?)?\d{1,6}(?![\w]))")

# Address words before an address that has no street word: "lives at", "Address:", "ship it to", "visit
# you at", "pick me up at". At most three words between the word and the address.
_CUE = regex.compile(
    r"(?i:\b(?:address(?:es)?|addr|adresse|anschrift|dirección|direccion|endereço|indirizzo|adres|cím|"
    r"(?:live|lives|lived|living|reside|resides|resided|residing|stay|stays|staying|stayed)[ \t]+(?:at|on|in)|"
    r"moved?[ \t]+(?:in[ \t]+)?to|moving[ \t]+to|ship(?:s|ped|ping)?[ \t]+to|deliver(?:y|ed|s)?[ \t]+to|"
    r"(?:send|sent|post|posted|mail|mailed|forward|forwarded)[ \t]+(?:\w+[ \t]+){0,3}?to|visit|visiting|"
    r"pick[ \t]+\w+[ \t]+up[ \t]+(?:at|from)|"
    r"located[ \t]+at|located|come[ \t]+(?:over[ \t]+)?to|drop[ \t]+(?:it|them|\w+)[ \t]+off[ \t]+at|"
    r"home[ \t]+is|house[ \t]+is|flat[ \t]+is|place[ \t]+is|at[ \t]+my[ \t]+place|street|home|"
    r"(?:i'?m|we'?re|i[ \t]+am|we[ \t]+are|is|are|was|were)[ \t]+(?:now[ \t]+|still[ \t]+)?(?:at|on)|"
    r"meet(?:[ \t]+(?:me|us))?[ \t]+(?:at|outside)|see[ \t]+you[ \t]+at|arriv(?:e|es|ed|ing)[ \t]+at|"
    r"(?:come|comes|came|head|drive|walk|get|return|bring|take)[ \t]+(?:\w+[ \t]+)?to|outside|opposite|next[ \t]+to|"
    r"(?:flat|house|apartment|home|office|place|party|studio|room|shop|store|studio)[ \t]+(?:is[ \t]+)?(?:at|on|in)|"
    r"moved[ \t]+into|renting|rent[ \t]+at|directions[ \t]+to|taxi[ \t]+to))"
    r"\b[^.!?\n]{0,30}$")

_SPACE = r"[ \t]"


def _compact(pattern: str) -> str:
    """A pattern written over several lines for reading, without the line breaks and indentation."""
    return "".join(line.strip() for line in pattern.splitlines())


def _alternation(words: str) -> str:
    return "(?:" + words + ")"


# Anchors. Each has a named group per part so the code can tell a strong anchor from a weak one.
_ANCHORS = regex.compile(
    _compact(rf"""
    (?<![\w'’.,/:-])(?=[\p{{L}}\d#])(?:
    (?P<box>{_PO_BOX})
    |(?P<prefix>
        (?:(?P<hn1>{_HOUSE}),?{_SPACE}+)?
        (?<![\w.])(?P<ptype>(?i:{_alternation(_PREFIX_TYPES)}))(?:\.|(?=[ \t]))(?![\w])[ \t]*
        (?:{_LINK}[ \t]+){{0,2}}(?P<pname>{_NAME})
        (?:,?{_SPACE}+(?P<hn2>{_HOUSE}))?
    )
    |(?P<before>
        (?P<hn3>{_HOUSE}),?{_SPACE}+(?P<bname>{_NAME}){_SPACE}+(?i:{_alternation(_SUFFIX_BEFORE)})\b\.?
        (?:{_SPACE}+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?
    )
    |(?P<unitfirst>
        (?<![\w]){_UNIT},?{_SPACE}+(?:{_PO_BOX}|(?:{_HOUSE},?{_SPACE}+)?{_NAME}(?:,?{_SPACE}+{_HOUSE})?)
    )
    |(?P<weak1>(?P<hn5>{_HOUSE}),?{_SPACE}+(?P<wname1>{_NAME}))
    |(?P<after>(?P<aname>{_NAME})(?P<sfx>{_SPACE}+(?i:{_alternation(_SUFFIX_AFTER)})(?![\p{{L}}]))?
        (?:\.,?{_SPACE}*|,?{_SPACE}+)(?P<hn4>{_HOUSE}))
    )"""),
)

# One part of an address's tail, after a comma, a space or a line break.
_TAIL_PART = regex.compile(
    _compact(rf"""
    (?P<postal>(?:[A-Z]{{2,3}}{_SPACE}+)?{_POSTAL}{_POSTAL_END}(?:,?{_SPACE}+(?P<pcity>{_NAME}){_DISTRICT}{_REGION}?)?)
    |(?P<unit>{_UNIT})
    |(?P<city>{_NAME}{_DISTRICT}{_REGION}?
      (?P<cpostal>,?{_SPACE}+(?:[A-Z]{{2,3}}{_SPACE}+|(?!\d{{4}}(?!\d)))
        {_POSTAL}{_POSTAL_END}(?![ \t]+\p{{Lu}}))?)
    |(?P<box>{_PO_BOX})
    |(?P<region>(?i:jud\.|județul|judetul|county|co\.|provincia|prov\.|distrito|district|okres|kraj|woj\.|
      województwo|département|dept\.){_SPACE}+{_NAME})
    """),
)
_INLINE_SEP = regex.compile(r"(?:\.(?=[ \t]*[,;|]))?[ \t]*(?:[,;|][ \t]*)?")
_NEXT_LINE = regex.compile(r"[ \t,;]*\r?\n[ \t]*(?=\S)")
_YEAR = regex.compile(r"(?:19|20)\d\d")
_MAX_NAME_WORDS = 5
# Words for street that are also English words or short forms: a street only when written as one ("Via Roma
# 12", "Pl. Wilsona 4": capitalized, or a short form with its dot), or with a postal code or an address word.
_ENGLISH_PREFIXES = frozenset((
    "via", "place", "route", "square", "passage", "promenade", "esplanade", "cours", "plaza", "corso", "largo",
    "vila", "quadra", "vico", "borgo", "salita", "ronda", "camino", "voie"))
_SHORT_PREFIXES = frozenset(("tv", "al", "r", "pl", "os", "ch", "av", "loc", "imp", "str", "rte"))
# The first word of a name that is no street's: times and days, words that start a sentence or name a part of a
# document ("meet me at 7 Tonight", "Since 19 May", "Chapter 3").
_NO_STREET_WORD = regex.compile(
    r"(?i:tonight|today|tomorrow|morning|evening|afternoon|night|noon|midnight|sharp|o'clock|hours?|minutes?|"
    r"(?:mon|tues|wednes|thurs|fri|satur|sun)day|mon|tue|wed|thu|fri|sat|sun|since|from|until|till|after|before|"
    r"about|over|under|in|on|at|by|for|with|and|or|but|the|a|an|page|chapter|version|section|figure|table|step|"
    r"part|volume|vol|issue|episode|season|series|number|top|day|week|month|year|years|times?)(?![\p{L}])")
_SUFFIX_WORD = regex.compile(rf"(?i:{_SUFFIX_AFTER})")
_COUNTED = regex.compile(r"(?i:\b(?:the|these|those|all|top|only|first|last|best|over|about|around)[ \t]+)$")
_LATIN_NAME = regex.compile(r"[\p{Latin} .'’()-]+")


@functools.cache
def _countries() -> frozenset[str]:
    """Country names (lower case) in the Latin-script languages of phonenumbers' locale data, short forms and
    a few names in the countries' own languages."""
    from phonenumbers.geodata.locale import LOCALE_DATA

    names = {"usa", "u.s.a.", "us", "u.s.", "uk", "u.k.", "england", "scotland", "wales", "northern ireland",
             "great britain", "holland", "the netherlands", "czechia", "america", "united states of america",
             # names in languages the locale data lacks
             "magyarország", "česko", "česká republika", "românia", "danmark", "norge", "suomi", "österreich",
             "schweiz", "suisse", "svizzera", "éire", "hrvatska", "slovensko", "slovenija", "türkiye", "ísland"}
    for by_language in LOCALE_DATA.values():
        names.update(name.lower() for name in by_language.values()
                     if not name.startswith("*") and _LATIN_NAME.fullmatch(name))
    return frozenset(names)


def _is_country(text: str) -> bool:
    return text.strip().lower() in _countries() or text.strip().rstrip(".").lower() in _countries()


def _too_long(name: str | None) -> bool:
    return name is not None and len(name.split()) > _MAX_NAME_WORDS


def _parts(text: str, pos: int, stop: int, *, after_comma: bool) -> tuple[int, bool]:
    """The tail parts on one line from ``pos`` (before ``stop``): where they end, and whether one confirms
    an address (a postal code, a unit, a P.O. box, a country)."""
    end, confirmed, comma = pos, False, after_comma
    for _ in range(6):
        if end > pos:
            sep = _INLINE_SEP.match(text, end, stop)
            assert sep is not None  # every part of the separator is optional
            if sep.end() == end:
                break  # glued to the previous part: no new part
            comma = bool(sep.group().strip())
            start = sep.end()
        else:
            start = pos
        part = _TAIL_PART.match(text, start, stop)
        if part is None or part.end() == start:
            break
        kind = next(k for k in ("postal", "unit", "city", "box", "region") if part.group(k))
        value = part.group()
        if kind in ("city", "region"):
            country = _is_country(value)
            has_postal = bool(part.group("cpostal"))
            if not comma and not has_postal:
                break  # "12 Baker Street London" reads on; a city joins after a comma or a line break
            if _too_long(value):
                break
            confirmed = confirmed or country or has_postal
        elif kind == "postal":
            city = part.group("pcity")
            code = value[:part.start("pcity") - start] if city else value
            if _YEAR.fullmatch(code.strip(" ,")) and not city:
                break  # "…, 2019" is a year, not a postal code
            if city and _too_long(city):
                break
            confirmed = True
        else:  # a unit or a P.O. box
            confirmed = True
        end = part.end()
    return end, confirmed


def _tail(text: str, pos: int) -> tuple[int, bool]:
    """How far the address tail after ``pos`` goes (on its line and the following lines of an address block),
    and whether it holds a confirming part."""
    line_stop = _line_end(text, pos)
    sep = _INLINE_SEP.match(text, pos, line_stop)
    assert sep is not None
    end, confirmed = pos, False
    if sep.end() > pos:
        end, confirmed = _parts(text, sep.end(), line_stop, after_comma=bool(sep.group().strip()))
        if end == sep.end():
            end = pos
    for _ in range(4):
        if text[end:line_stop].strip(" \t,;.|"):
            break  # the sentence goes on: the address ended on this line
        newline = _NEXT_LINE.match(text, end)
        if newline is None:
            break
        line_start = newline.end()
        line_stop = _line_end(text, line_start)
        line_end, line_confirmed = _parts(text, line_start, line_stop, after_comma=True)
        # A letter's address line joins only as a whole line with a postal code, a unit or a country in it:
        # a greeting or a name on the next line is not a city.
        if line_end == line_start or not line_confirmed or text[line_end:line_stop].strip(" \t,;."):
            break
        end, confirmed = line_end, True
    return end, confirmed


def _line_end(text: str, pos: int) -> int:
    stop = text.find("\n", pos)
    return len(text) if stop < 0 else stop


def _cue_before(text: str, start: int) -> bool:
    return bool(_CUE.search(text[max(0, start - 60):start]))


def _strong_after(text: str, match: Any) -> bool:
    """Whether a name before a house number names a street: "Király utca 15.", "Baker Street 5", or the end
    of a compound, "Gießstraße 9", "Hauptstr. 4" (else it is "Husova 12" or "Windows 11")."""
    street = text[match.start("aname"):match.start("hn4")].rstrip(" \t,").split()[-1]
    return bool(match.group("sfx") or _COMPOUND.fullmatch(street) or _SUFFIX_WORD.fullmatch(street.rstrip(".")))


def _street_inside(text: str, match: Any) -> bool:
    """Whether a street named by a street word starts inside ``match`` (after its first character)."""
    pos = match.start() + 1
    while (later := _ANCHORS.search(text, pos)) is not None and later.start() < match.end():
        if later.lastgroup in ("before", "prefix") or (later.lastgroup == "after" and _strong_after(text, later)):
            return True
        pos = later.start() + 1
    return False


def find_addresses(text: str) -> Iterator[tuple[int, int, bool]]:
    """The addresses in ``text``: (start, end, strong), strong when a street word or a P.O. box names it."""
    pos = 0
    while (match := _ANCHORS.search(text, pos)) is not None:
        kind = match.lastgroup
        names = [match.group(g) for g in ("pname", "bname", "aname", "wname1") if match.group(g)]
        end, confirmed = _tail(text, match.end())
        last_number = next((g for g in ("hn2", "hn4") if match.group(g)), None)
        if (last_number and match.end(last_number) == match.end()
                and not _YEAR.fullmatch(match.group(last_number).strip(" ."))
                and (code := _TAIL_PART.match(text, match.start(last_number), _line_end(text, match.end())))
                and code.group("pcity")):
            # "rue Mercière, 69002 Lyon": the number after the street may be the postal code of the city after it
            as_postal, postal_confirmed = _parts(text, match.start(last_number), _line_end(text, match.end()),
                                                 after_comma=True)
            if as_postal > end and postal_confirmed:
                end, confirmed = max(as_postal, _tail(text, as_postal)[0]), True
        if kind == "box":
            strong = not match.group().lower().startswith("box")  # "Box 12" alone may be a storage box
        elif kind == "prefix":
            # "via Paris" is no address; "via Zoom 2 times", "TV Series 3" neither, but "Via Roma 12" is
            ptype = match.group("ptype")
            if ptype.isalpha() and ptype.isupper() and len(ptype) > 1 and text[match.end("ptype")] != ".":
                pos = match.start() + 1  # "OS X", "TV Series 3": an acronym, not a word for street
                continue
            strong = bool(match.group("hn1") or match.group("hn2")) and not (
                (ptype.lower() in _ENGLISH_PREFIXES and not ptype.istitle())
                or (ptype.lower() in _SHORT_PREFIXES and text[match.end("ptype")] != "."))
        elif kind == "after":
            strong = _strong_after(text, match)
        else:
            strong = kind == "before"
        weak = kind == "weak1" or (kind == "after" and not strong)
        accept = (not any(_too_long(n) for n in names)
                  and (strong or confirmed or _cue_before(text, match.start()))
                  # "the 3 Supreme Court justices": a count, not a house number
                  and not (kind in ("before", "weak1") and _COUNTED.search(text, 0, match.start()))
                  # "Christmas 2019", "Windows 11": a name and a number are an address only when confirmed
                  and not (weak and not confirmed
                           and _YEAR.fullmatch(match.group("hn4" if kind == "after" else "hn5").rstrip("."))))
        if accept and weak:
            # "send it to Ana Silva, 8 Willow Drive": the street that starts inside wins over "Silva, 8"
            accept = (not _street_inside(text, match)
                      and all(any(c.islower() for c in n) for n in names)  # the groups of an IBAN
                      and not _NO_STREET_WORD.match(names[0]))  # "meet me at 7 Tonight", "Since 19 May"
        if accept:
            yield match.start(), end, strong
            pos = end
        else:
            pos = match.start() + 1


def address_recognizer(entity: str = "LOCATION") -> Any:
    """A Presidio recognizer for ``find_addresses`` (Presidio is imported on demand: it is slow to import)."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class StreetAddressRecognizer(EntityRecognizer):
        def load(self) -> None:
            # The country names (half a second to import) are read while the engines are built, not when
            # the first message with an address comes.
            _countries()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if entity not in entities:
                return []
            return [RecognizerResult(entity, start, end, 0.85 if strong else 0.7,
                                     recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                           RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                    for start, end, strong in find_addresses(text)]

    return StreetAddressRecognizer(supported_entities=[entity], name="StreetAddressRecognizer")
