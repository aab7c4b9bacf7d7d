"""Templates and hand-written lines of the TEST split.

DO NOT READ THIS FILE (or test.jsonl) WHILE TUNING THE SCRUBBER: its figures are only a fair estimate of
recall on unseen text as long as nobody tuned to it. Tune on templates_tune.py / tune.jsonl; run the test
split only to report.
"""

from __future__ import annotations

# (template id, kind, text)
TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("test-chat-01", "chat", "Could you draft a reference letter for {name}? They interned with us for a year."),
    ("test-chat-02", "chat", "hiya, {first} again. Need help with my CV"),
    ("test-chat-03", "chat", "i'm {first_lc} and i have no idea how mortgages work"),
    ("test-chat-04", "chat", "remind me what to tell {first2_lc} about {first}'s surprise party"),
    ("test-chat-05", "chat", "The flat is at {street_apt}, write an ad for a flatmate"),
    ("test-chat-06", "chat", "office {phone_local}, fax {phone_local2} - format these for a business card"),
    ("test-chat-07", "chat", "number on my card is {card} exp 08/27, why does the shop keep rejecting it"),
    ("test-chat-08", "chat", "account number {card_bad} - is this the right length for a UK account?"),
    ("test-chat-09", "chat", "I need to pay rent to IBAN {iban} by Friday, write a reminder for myself"),
    ("test-chat-10", "chat", "DOB {dob}, what's my star sign and is it compatible with {first}'s?"),
    ("test-chat-11", "chat", "my SSN is {ssn}, is it safe to give it to a recruiter over email?"),
    ("test-chat-12", "chat", "pinging {ip} gives 40% packet loss, what does that mean"),
    ("test-chat-13", "chat", "we're celebrating on {dob_noyear}, it's my 30th!! ideas?"),
    ("test-chat-14", "chat", "{name_lc} keeps texting me from {phone}, how do I block a number on android"),
    ("test-support-01", "support",
     "Good afternoon. The parcel for {initial_name} was returned to sender although the address "
     "{address} is correct. Please call {phone} to rearrange delivery."),
    ("test-support-02", "support",
     "Ticket #58213 - customer {name} disputes a payment of 49.90 EUR from {iban}. Contact: {email}"),
    ("test-support-03", "support", "Hi, this is {first} {last}, my direct line is {phone_local}, please call back"),
    ("test-support-04", "support",
     "Please update my billing address to {po_box}. Card ending with the full number {card}."),
    ("test-support-05", "support", "Access was blocked for {email} from {ip}; the user says they were travelling."),
    ("test-letter-01", "letter",
     "{address_country}\n\nDear {first},\nit was lovely to see you in spring. Write soon!\nLove, {first2}"),
    ("test-letter-02", "letter",
     "Re: tenancy at {street_city}\nDear {name}, I hereby give notice to end my tenancy. Signed, {name2}"),
    ("test-letter-03", "letter",
     "Dear Sir or Madam, I, {name}, born on {dob}, request a copy of my records. My phone: {phone}."),
    ("test-group-01", "group",
     "{first}: who's got the keys\n{first2}: {first3} does\n{first3}: yeah come by {street}"),
    ("test-group-02", "group",
     "<{first_lc}> anyone know a plumber?\n<{first2_lc}> call {name} on {phone}, he's cheap"),
    ("test-signature-01", "signature",
     "Thanks for the quick turnaround.\n\nBest,\n{initial_name}\n{street_city}\nT {phone} | M {phone_local}"),
    ("test-signature-02", "signature", "-- sent from my phone, {first} ({email})"),
    ("test-form-01", "form", "Name: {name}\nDate of birth: {dob}\nHome address: {street_apt}\nMobile: {phone_local}"),
    ("test-form-02", "form",
     "First name: {first} / Last name: {last} / E-mail: {email} / IBAN: {iban} / SSN: {ssn}"),
    ("test-form-03", "form", "Cardholder: {name}, card no. {card_bad}, billing: {address}"),
)

HANDWRITTEN: tuple[str, ...] = (
    "omg [sarah|PERSON] finally replied!!! what do i say back",
    "[Marek|PERSON] here - need a quick summary of this article",
    "how long do i boil an egg for",
    "write a birthday poem for my grandma [Edith|PERSON], she's turning 90",
    "my landlord [Gonzalo Ruiz|PERSON] won't fix the heating, draft a firm email",
    "any tips for a first marathon?",
    "can u check if [amara|PERSON] is right that the deadline is tomorrow",
    "drop it off at [Rua do Arenque 1634|STREET_ADDRESS], ask for [Joana|PERSON]",
    "the office is [Király u. 15.|STREET_ADDRESS], 2nd floor, how do I say that in English properly",
    "my number changed, it's [9472 7916|PHONE_NUMBER] now, update my signature",
    "mobile [60-56-85-91|PHONE_NUMBER] — is this a French format?",
    "why is the sky blue",
    "[Faina D. Yefremova|PERSON] asked me to translate her bio",
    "pls send the invoice to [hello@kowalski-design.pl|EMAIL_ADDRESS]",
    "I was born on [12 August|DATE_OF_BIRTH], what flowers are for that month",
    "[Nguyen Thi Lan|PERSON] and I are organizing a potluck, suggest dishes",
    "is it rude to leave a group chat",
    "my ssn [078-05-1120|US_SSN] was in a data breach, what now",
    "transfer to [DE89 3704 0044 0532 0130 00|IBAN_CODE] failed, what does error R03 mean",
    "summarize the plot of hamlet in 3 sentences",
)
