"""Templates and hand-written lines of the TUNE split: tune the scrubber against these freely.

Slots are described in values.py ({first2} is a second first name, {first_lc} one in lower case). Hand-written
lines mark their identifiers as [value|TYPE].
"""

from __future__ import annotations

# (template id, kind, text)
TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("tune-chat-01", "chat", "hey can you help me write a thank-you note to {first}? she helped me move last week"),
    ("tune-chat-02", "chat", "My name is {name} and I am applying for a junior dev role, polish my intro?"),
    ("tune-chat-03", "chat", "I'm {first}, I run a small bakery and need a caption for instagram"),
    ("tune-chat-04", "chat", "can u email {first_lc} and tell her the meeting moved to 3pm"),
    ("tune-chat-05", "chat", "what do I say to {first}'s mum at the funeral? we weren't close"),
    ("tune-chat-06", "chat", "my new address is {street_city}, please update the cover letter header"),
    ("tune-chat-07", "chat", "call me on {phone} if the draft is ready, or mobile {phone_local}"),
    ("tune-chat-08", "chat", "my card {card} got declined twice today, how do I write a complaint?"),
    ("tune-chat-09", "chat", "the transfer to {iban} bounced, translate this to German for the bank please"),
    ("tune-chat-10", "chat", "i was born {dob} so how old am I in dog years lol"),
    ("tune-chat-11", "chat", "my server at {ip} keeps timing out, here is the nginx log"),
    ("tune-chat-12", "chat", "{first} here, quick question about tax brackets"),
    ("tune-chat-13", "chat", "ok so {name} from the landlord's office wants my SSN {ssn}, is that normal??"),
    ("tune-chat-14", "chat", "my birthday is {dob_noyear}, suggest a party theme"),
    ("tune-support-01", "support",
     "Hello, I ordered a blender but it never arrived. Order for {name}, shipping to {address}. "
     "You can reach me at {email} or {phone}."),
    ("tune-support-02", "support",
     "Hi team, please refund the charge on card number {card_bad}, account holder {name}. Thanks"),
    ("tune-support-03", "support",
     "Subject: change of bank details\nNew IBAN: {iban}\nAccount holder: {name}\nDate of birth: {dob}"),
    ("tune-support-04", "support",
     "I can't log in since yesterday. Username is {email}, last login from {ip}. Office phone {phone_local}."),
    ("tune-support-05", "support", "Please send the replacement part to {po_box}, attn. {initial_name}"),
    ("tune-letter-01", "letter",
     "Dear {name},\n\nThank you for your letter of last week. I will visit you at {street_apt} on Monday.\n\n"
     "Kind regards,\n{name2}"),
    ("tune-letter-02", "letter",
     "Dear Mr {last},\nplease find attached my application. My details: {address_country}, tel. {phone}.\n"
     "Yours sincerely, {initial_name}"),
    ("tune-letter-03", "letter",
     "To whom it may concern, I confirm that {name} (born {dob}) has lived at {street} since 2019."),
    ("tune-group-01", "group",
     "{first}: is anyone coming tonight?\n{first2}: yes, pick me up at {street}\n{first}: ok 8pm"),
    ("tune-group-02", "group",
     "[10:02] {first}: new number is {phone_local}\n[10:03] {first2}: saved it, thanks {first}"),
    ("tune-signature-01", "signature",
     "Let me know what you think of the draft.\n--\n{name}\nSenior Analyst\nMobile: {phone}\n{email}"),
    ("tune-signature-02", "signature", "Cheers, {first}\nfax {phone_local} | {street_city}"),
    ("tune-form-01", "form", "Name: {name}\nEmail: {email}\nPhone: {phone}\nAddress: {address}"),
    ("tune-form-02", "form", "Full name: {initial_name} | DOB: {dob} | SSN: {ssn} | Card: {card}"),
    ("tune-form-03", "form", "Beneficiary: {name}; IBAN {iban}; reference: invoice 2024-118"),
)

HANDWRITTEN: tuple[str, ...] = (
    "lol [jess|PERSON] just sent me the worst meme",
    "ok so me and [Tomasz|PERSON] are fighting again, how do i apologise without sounding fake",
    "can you make this sound less passive aggressive: 'as I already told you, [Kevin|PERSON]...'",
    "what's a good recipe for leftover rice",
    "text mum that i'll be late, actually no, write it for me",
    "[Ayesha|PERSON]'s wedding speech needs to be 3 min max, help",
    "im [dave|PERSON] btw, we talked yesterday about the python thing",
    "my wifi password is on the router sticker right? how do I change it",
    "send it to [priya.n@gmail.com|EMAIL_ADDRESS] pls",
    "he lives at [14 Orchard Close|STREET_ADDRESS], is that walking distance from the station?",
    "ring me back on [07700 900123|PHONE_NUMBER] when u can",
    "explain recursion like I'm five",
    "ugh [Mr Okafor|PERSON] gave us another essay on the french revolution",
    "is it weird to invite [Lena|PERSON] and [Björn|PERSON] to the same dinner",
    "I typed my card as [4929 1234 5678 9012|CREDIT_CARD] on the form, is that why it failed?",
    "how many calories in a banana",
    "born [3rd of May 1991|DATE_OF_BIRTH], am I a millennial?",
    "yo [kenji|PERSON] said the party's at his, [Kastanienallee 12|STREET_ADDRESS]",
    "tell me a joke about accountants",
    "our router is [192.168.1.1|IP_ADDRESS] but the admin page won't load",
)
