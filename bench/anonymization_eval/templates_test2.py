"""Templates of the test2 split: a second held-out evaluation set (generate.py fills each 5 times, once if slotless).

test2 was written after the scrubber had been tuned on the tune split and measured once on the test split, to
measure the next round of tuning honestly. It was written without reading the scrubber's code or the other splits'
templates and texts: the texts are what people paste or type to an assistant (chat messages, requests to rewrite
or summarize, support requests, letters, e-mail threads with quoted headers, signatures, forms, chat exports in the
formats WhatsApp, Slack, Teams, Discord, Telegram, iMessage, Signal, IRC and Zoom write, meeting minutes), with
names in many positions and words that look like names but are not. Do not read it, or test2.jsonl, while tuning.

Slots are those of values.py; a template's slot repeated is the same value, numbered slots ({first2}) are others.
"""

from __future__ import annotations

# (template id, kind of text, template)
TEMPLATES: list[tuple[str, str, str]] = [
    # --- chat messages --------------------------------------------------------------------------------------
    ("t2-chat-01", "chat",
     "can you help me word a thank-you note to {first_lc}? covered all my shifts in May while I was off"),
    ("t2-chat-02", "chat",
     "My landlord {name} keeps texting me from {phone} at 11pm about the boiler. Is that even allowed in my "
     "country? What can I say politely"),
    ("t2-chat-03", "chat",
     "{first} and {first2} are arguing about whether to drive to Jordan or fly, help me make a pros/cons list "
     "we can all agree on"),
    ("t2-chat-04", "chat",
     "Is it weird that {first}'s mum still sends birthday cards to my old flat at {street_city}? I moved out "
     "two years ago"),
    ("t2-chat-05", "chat",
     "what's a good reply to this: \"hey it's {first}, got your number from {first2}, are you still selling "
     "the bike?\""),
    ("t2-chat-06", "chat",
     "quick one - my bank says to send money to {iban} for the deposit but the name on it is {name}, not the "
     "agency. does that look like a scam to you?"),
    ("t2-chat-07", "chat",
     "I need to tell my manager {initial_name} that I'm quitting. We get on well and HR already knows. "
     "how do I start the conversation"),
    ("t2-chat-08", "chat",
     "Translate into Spanish please: My name is {name}, I was born on {dob} and I live at {address}."),
    ("t2-chat-09", "chat",
     "Explain like I'm five why my router's public IP {ip} is different from what my laptop shows"),
    ("t2-chat-10", "chat",
     "ok so {particle_name} (my supervisor) wants the chapter by Friday and I haven't started. realistic "
     "plan for 4 days?"),
    ("t2-chat-11", "chat",
     "My kid {first} turns 7 on {dob_noyear}, ideas for a party at home for 10 kids that doesn't cost "
     "a fortune? Loves Frozen and anything with horses"),
    ("t2-chat-12", "chat",
     "grandma's card got skimmed, the number was {card}. what should she do first, call the bank or the "
     "police?"),
    ("t2-chat-13", "chat",
     "Will it be rude if I don't invite {first} to the wedding? we were close at uni but haven't talked "
     "since 2019"),
    ("t2-chat-14", "chat",
     "rate my dating profile bio: \"{first}, 31, Virgo. Dog person. Will travel for good ramen.\""),
    ("t2-chat-15", "chat",
     "{first} says hi btw, loved the recipe you gave me last week (the one with Earl Grey in the "
     "sponge)"),
    ("t2-chat-16", "chat",
     "how do I politely tell my neighbour {name_lc} that the dog barks from 6am? nice otherwise"),
    # --- requests to rewrite, summarize, check ------------------------------------------------------------
    ("t2-rewrite-01", "rewrite request",
     "Make this sound more professional:\n\nhi {first}, sorry for the late reply, the invoice is attached, "
     "pls pay to {iban} by friday thx"),
    ("t2-rewrite-02", "rewrite request",
     "Summarize this for me in 3 bullet points:\n\n{name} called on Tuesday about the damaged parcel. "
     "Wants a refund to card {card}, item already returned from {street_city}. "
     "Best number to reach them is {phone}."),
    ("t2-rewrite-03", "rewrite request",
     "Fix the grammar: \"Me and {first} has been working on this project since March and we would like "
     "to presented it to Mr. {last} next week.\""),
    ("t2-rewrite-04", "rewrite request",
     "shorten this bio to 50 words: {name} is a nurse from Victoria who moved to Lincoln in 2015. Born "
     "{dob}, has worked in palliative care for ten years and volunteers with Hope House on weekends."),
    ("t2-rewrite-05", "rewrite request",
     "Can you turn this into a formal complaint? The courier left my parcel outside {street_apt} in the rain "
     "and the driver ({first}) just marked it as delivered. Tracking says signed by {last}, which is not "
     "anyone who lives here."),
    ("t2-rewrite-06", "rewrite request",
     "rewrite this text to my ex so it sounds less angry: \"{first_lc} you still have my stuff, I want the "
     "PS5 and the Dyson back by sunday or I'm telling your mum\""),
    ("t2-rewrite-07", "rewrite request",
     "Translate to English:\n\n\"Hallo {first}, anbei meine neue Adresse: {street_city}. Meine Handynummer "
     "bleibt {phone}. Liebe Grüße, {first2}\""),
    ("t2-rewrite-08", "rewrite request",
     "Proofread my cover letter opening: Dear Ms {last}, I was delighted to hear about the Junior Analyst "
     "role from {name}, who spoke highly of your team at the Amazon Web Services meetup."),
    ("t2-rewrite-09", "rewrite request",
     "Turn these notes into a short email to the team:\n- {first} out sick till Weds\n- {initial_last} "
     "covering the Ford account\n- server {ip} going down Sat night for patching"),
    # --- support requests ----------------------------------------------------------------------------------
    ("t2-support-01", "support request",
     "Hi, I was charged twice for order 48213. Account holder is {name}, card ending in the number {card}. "
     "Please refund one of the charges. You can reach me on {phone} or {email}."),
    ("t2-support-02", "support request",
     "My account got locked after a login from {ip}, which wasn't me. Username is the email {email}. I'm "
     "travelling in Georgia this month so please don't block my card."),
    ("t2-support-03", "support request",
     "Hello, I'd like to change the delivery address on my subscription from {street_city} to "
     "{street_city2}. Name on the account: {name}. Thanks!"),
    ("t2-support-04", "support request",
     "The direct debit keeps failing. I've double checked the IBAN, it's {iban} and the account is in my "
     "partner's name, {name}. Does it need to be in mine?"),
    ("t2-support-05", "support request",
     "hi I'm booking a flu jab online for my parent {name} ({dob}) but the form says the date of birth "
     "doesn't match. SSN is {ssn} if that helps. can someone call us at {phone}"),
    ("t2-support-06", "support request",
     "Hi team, the card number field rejects my card. I typed {card_bad} exactly as printed. Is there a "
     "problem with Mastercard today?"),
    ("t2-support-07", "support request",
     "My tenant {particle_name} says the deposit never came back. I sent it to {iban} on the 3rd. Can "
     "you confirm the transfer went through? Reference: FLAT 2B DEPOSIT"),
    ("t2-support-08", "support request",
     "Wrong phone number on my profile, please change {phone} to {phone_local2}. Account: {email}"),
    # --- letters -------------------------------------------------------------------------------------------
    ("t2-letter-01", "letter",
     "{name}\n{address}\n\nTo whom it may concern,\n\nI am writing to dispute the parking fine issued on "
     "the 14th. My car was parked on private land with the owner's permission.\n\nYours faithfully,\n{name}"),
    ("t2-letter-02", "letter",
     "Please check the tone of this:\n\nDear {first},\n\nThank you for looking after Rosie (our cat) while we were "
     "away. The garden has never looked better. Please send your bank details, or if it's easier I can "
     "transfer to the IBAN you gave {first2} last year.\n\nWarm regards,\n{first2} and the kids"),
    ("t2-letter-03", "letter",
     "Dear Mr {last},\n\nFurther to our call, I confirm that {name} (date of birth {dob}) has been employed "
     "by us since 2021 as a warehouse supervisor.\n\nKind regards,\n{initial_last}\nHR, Baker & Lane Ltd"),
    ("t2-letter-04", "letter",
     "help me finish this reference letter: \"I have taught {first} {last} piano for six years. "
     "{first} is punctual, patient and"),
    ("t2-letter-05", "letter",
     "Dear landlord,\n\nI'm giving notice to end my tenancy at {street_apt}, effective end of next month. "
     "Please return the deposit to {iban}.\n\nBest,\n{name}\n{phone}"),
    ("t2-letter-06", "letter",
     "Write a condolence card for my colleague, whose parent {name} passed away last week after 30 years "
     "of teaching at the primary school in town."),
    # --- e-mail threads --------------------------------------------------------------------------------------
    ("t2-email-01", "email thread",
     "can you draft my reply to this?\n\nOn Mon, 3 Mar 2025 at 09:14, {first} {last} <{email}> wrote:\n> Hi, "
     "just checking whether the keys are ready for pickup. I can come by Thursday.\n> {first}"),
    ("t2-email-02", "email thread",
     "From: {name} <{email}>\nSent: Friday, 7 November 2025 16:02\nTo: {first2} {last2} <{email2}>\nSubject: RE: "
     "venue booking\n\nHi {first2}, the deposit has been paid. See you on the 21st!\n\nwhat do they mean by "
     "see you on the 21st, the event is on the 22nd?"),
    ("t2-email-03", "email thread",
     "Summarize this thread please\n\n---------- Forwarded message ---------\nFrom: {name} <{email}>\n"
     "Date: Wed, 12 Feb 2025, 11:40\nSubject: invoice 2291\nTo: <{email2}>\n\nHello,\nthe invoice is still "
     "unpaid. Payment details: {iban}. Contact me on {phone} if there's a problem.\n{name}"),
    ("t2-email-04", "email thread",
     "> On 18 Jun 2025, at 22:31, {first} {last} <{email}> wrote:\n>\n> Are we still on for Saturday? "
     "{first2} can bring the tent.\n\nhow do I say no nicely, I double booked"),
    ("t2-email-05", "email thread",
     "Le jeu. 9 janv. 2025 à 14:05, {name} <{email}> a écrit :\n> Bonjour, pouvez-vous me rappeler au "
     "{phone} ?\n\nwhat is this person asking? my French is rusty"),
    ("t2-email-06", "email thread",
     "Am 02.04.2025 um 08:17 schrieb {name} <{email}>:\n> Die Rechnung geht an {street_city}.\n\ncan you "
     "translate and tell me if I need to do anything"),
    ("t2-email-07", "email thread",
     "From: IT Service Desk <{email}>\nTo: {name}\n\nWe noticed a sign-in to your "
     "account from {ip}. If this was not you, reset your password.\n\nis this phishing??"),
    # --- signatures -----------------------------------------------------------------------------------------
    ("t2-sig-01", "signature",
     "Is my email signature too long?\n\n{name}\nSenior Project Manager | Northwind Logistics\nM: {phone}\n"
     "E: {email}\n{address_country}"),
    ("t2-sig-02", "signature",
     "Thanks again, talk soon\n\n--\n{initial_last}\n{phone}\nSent from my iPhone"),
    ("t2-sig-03", "signature",
     "Best wishes,\n{particle_name}\nPhD candidate, Dept. of Sociology\n{po_box}\n{email}"),
    ("t2-sig-04", "signature",
     "cheers\n{first}\n\n{first} {last} | Freelance photographer | mob {phone_local} | {email}"),
    # --- forms ----------------------------------------------------------------------------------------------
    ("t2-form-01", "form",
     "Please check my form before I submit it:\n\nSurname: {surname_caps}\nFirst name(s): {first}\nDate of "
     "birth: {dob}\nAddress: {address}\nTelephone: {phone}\nEmail: {email}"),
    ("t2-form-02", "form",
     "Emergency contact\nName: {name}\nRelationship: sister\nPhone (day): {phone}\nPhone (evening): "
     "{phone_local2}"),
    ("t2-form-03", "form",
     "Cardholder: {name}\nCard no.: {card}\nExp: 09/28\nBilling address: {street_city}\n\nwhy does the "
     "checkout keep saying declined?"),
    ("t2-form-04", "form",
     "Patient: {surname_caps}, {first}\nDOB: {dob}\nSSN: {ssn}\nReferring physician: Dr. {last2}\nReason: "
     "follow-up, suspected Parkinson's\n\ncan you explain what the abbreviations on this referral mean"),
    ("t2-form-05", "form",
     "Beneficiary name | {name}\nIBAN | {iban}\nBank | Sparkasse\nPurpose | rent December\n\nis this enough "
     "info for an international transfer?"),
    ("t2-form-06", "form",
     "name={name_lc}; email={email}; last_login_ip={ip}; plan=family\n\nwhat does plan=family mean in "
     "this export?"),
    # --- chat exports ---------------------------------------------------------------------------------------
    ("t2-wa-01", "chat export",
     "summarize this group chat:\n\n29/11/2026, 10:02 - {name}: Who's bringing the cake?\n29/11/2026, "
     "10:03 - {name2}: me! and {first3} is doing drinks\n29/11/2026, 10:05 - {name}: great, address "
     "is {street_city}, ring twice"),
    ("t2-wa-02", "chat export",
     "[29.11.26, 10:02:11] {name}: Hat jemand die Nummer vom Klempner?\n[29.11.26, 10:04:37] {name2}: "
     "{phone}\n[29.11.26, 10:05:02] {name}: Danke!\n\nwhat are they talking about"),
    ("t2-wa-03", "chat export",
     "[11/3/25, 9:41:08 PM] {first}: did u pay for the airbnb\n[11/3/25, 9:43:55 PM] {first2}: yes "
     "with my card {card} lol\n[11/3/25, 9:44:10 PM] {first}: 🙏\n\nis it safe that my friend posted this"),
    ("t2-wa-04", "chat export",
     "03/05/2025, 18:20 - Messages and calls are end-to-end encrypted.\n03/05/2025, 18:21 - {first} "
     "{last}: running late, tell {first2} to start without me\n03/05/2025, 18:40 - {first2}: "
     "ok\n\nwho is running late?"),
    ("t2-slack-01", "chat export",
     "{name}  10:02 AM\nanyone know why staging is down?\n{name2}  10:04 AM\nIP {ip} is blocked by "
     "the firewall again, @{name} can you ping ops\n\nwrite a short incident note from this"),
    ("t2-slack-02", "chat export",
     "{first} {last}  9:15 AM\n@{first2} can you review my PR before standup\n{first2}  9:17 AM\n"
     "on it :eyes:\n\nturn this into a standup update"),
    ("t2-teams-01", "chat export",
     "[10:02] {name}\nCan we move the call with {particle_name} to 3pm?\n[10:05] {name2}\nFine by me, "
     "I'll update the invite\n\nwhat time is the call now?"),
    ("t2-teams-02", "chat export",
     "{surname_caps} {first} (External) 14:31\nHi, the contract should go to {email}\n{name2} 14:33\n"
     "Noted, thanks\n\nshould I reply to this or let my colleague"),
    ("t2-discord-01", "chat export",
     "{first} — Today at 10:02 PM\nmy ip is {ip} join the server\n{first2} — Today at 10:03 PM\n"
     "bro dont post ur ip lmao\n\nis it actually dangerous to share an IP like that?"),
    ("t2-telegram-01", "chat export",
     "{name}, [29.11.2026 10:02]\nПривет! My new number is {phone}\n\n{name2}, [29.11.2026 10:07]\n"
     "saved 👍\n\nsummarize in one sentence"),
    ("t2-imessage-01", "chat export",
     "Nov 29, 2026 at 10:02 AM\n{first}\nCan you pick up the kids from practice? Will be stuck at the dentist till 5\n"
     "Me\nsure, what time\n{first}\n5:30, the gym on {street}\n\nremind me what I agreed to"),
    ("t2-signal-01", "chat export",
     "[2026-11-29 10:02] {name}: sending you the account for the rent: {iban}\n[2026-11-29 10:03] Me: "
     "thanks!\n\ncheck this IBAN format is right"),
    ("t2-irc-01", "chat export",
     "[10:02] <{first_lc}> anyone around who knows nginx?\n[10:03] <kernelpanic> {first_lc}: paste the "
     "config\n[10:05] <{first_lc}> server is {ip}, config on pastebin\n\nwhat's the etiquette here, "
     "should I help?"),
    ("t2-zoom-01", "chat export",
     "10:02:11 From {name} to Everyone:\n\tthe slides are in the shared drive\n10:03:45 From {name2} to "
     "Everyone:\n\tcan you also send them to {email2}?\n\nlist the action items"),
    ("t2-messenger-01", "chat export",
     "{first} {last}\nSat 10:02\nhey!! are you coming to {first2}'s thing tonight\nYou sent\nmaybe, "
     "where is it?\n{first}\n{street_apt}, buzz {last2}\n\nhelp me say no without sounding rude"),
    ("t2-email-08", "email thread",
     "-----Original Message-----\nFrom: {name} <{email}>\nSent: 21 October 2025 08:55\nTo: Accounts\n"
     "Subject: change of bank details\n\nPlease update our bank details to {iban} from the next payment "
     "run.\nRegards, {initial_last}\n\nmy boss forwarded this, is it legit or a scam?"),
    # --- meeting minutes ------------------------------------------------------------------------------------
    ("t2-minutes-01", "minutes",
     "Tidy up these minutes:\n\nAttendees: {first} {last}, {first2} {last2}, {initial_last}\nApologies: {first4}\n\n1. "
     "Budget - {first} to send figures by Fri\n2. Summer fair - {first2} will ask about the stalls for May"),
    ("t2-minutes-02", "minutes",
     "Board meeting, 4 March\nPresent: {particle_name} (chair), {first2} {last2}, {name3}\nAction: {first2} to "
     "contact the bank re IBAN {iban}\nNext meeting: Victoria Hall, 7pm"),
    ("t2-minutes-03", "minutes",
     "make this into a nice email: met w/ {first_lc} & {first2_lc} re: move. new office is "
     "{address}. phones same, main line {phone}"),
    # --- no identifier at all -------------------------------------------------------------------------------
    ("t2-none-01", "no identifier",
     "What's the difference between a Roth IRA and a 401(k)? Explain for someone who just started working"),
    ("t2-none-02", "no identifier",
     "write a haiku about Sunday mornings in June"),
    ("t2-none-03", "no identifier",
     "my sourdough is too dense, I feed the starter once a day and bake at 230C. what am I doing wrong"),
    ("t2-none-04", "no identifier",
     "Summarize: The council will vote on the new cycle lanes along Victoria Road next Tuesday. Residents "
     "can send comments until Friday."),
    ("t2-none-05", "no identifier",
     "Is it Jack Daniel's or Jack Daniels? settling a bet with the guys at work"),
    ("t2-none-06", "no identifier",
     "Give me a 20 minute workout I can do in a hotel room, no equipment"),
    ("t2-none-07", "no identifier",
     "Why did Victoria's Secret rebrand? keep it short"),
    ("t2-none-08", "no identifier",
     "compare the Ford Puma and the Dacia Sandero for a first car, mainly city driving"),
    ("t2-none-09", "no identifier",
     "Rewrite more politely: Please stop parking in front of the garage, it blocks the exit."),
    ("t2-none-10", "no identifier",
     "[10:02] <Guest42> is the meetup still on\n[10:03] <admin> yes, 7pm at the usual place\n\nwhat time "
     "is it"),
    ("t2-none-11", "no identifier",
     "what does 'Earl' mean as a title in the UK, and is it above or below a Duke?"),
    ("t2-none-12", "no identifier",
     "Draft a short out-of-office: away until Monday, urgent questions go to the front desk."),
    ("t2-none-13", "no identifier",
     "how many Rose Bowl games has Georgia won? rough number is fine"),
]

# Casual lines as typed, [value|TYPE] around each labeled value (generate.parse_marked).
HANDWRITTEN: list[str] = [
    "lol [jens|PERSON] just fell asleep on the sofa again",
    "tell [Marit|PERSON] I said happy birthday!! 🎂",
    "can u remind me to call [Oskari|PERSON] tmrw at 9",
    "Mark this as done pls, the Amazon return is sorted",
    "my sister [Ayşe|PERSON] wants to know if the offer is still on",
    "[Ngaio Tuhiwai|PERSON] from accounts says the number is [021 555 0183|PHONE_NUMBER]",
    "send the invoice to [mathilde.roy@videotron.ca|EMAIL_ADDRESS] and cc me",
    "ok so [tom|PERSON]'s party is at [Kalkbrennerstraße 12, 8004 Zürich|STREET_ADDRESS] on saturday",
    "Will May be colder than April this year? planning a trip to Florence",
    "[Dimitris|PERSON] and [Eleni|PERSON] are coming for dinner, something vegetarian?",
    "pls dont share this but my pin is not 1234 and my card is [4539 1488 0343 6467|CREDIT_CARD]",
    "Ask Mrs. [Kowalczyk|PERSON] if the kids can stay late on Thursday",
    "is [Søren|PERSON]'s new job with Maersk or Novo? I forget",
    "happy Friday!! what should I cook tonight",
    "[de Vries|PERSON] called again, he wants the keys back",
    "my dob is [14/02/1989|DATE_OF_BIRTH] but the form keeps saying invalid",
    "hey [Lupita|PERSON], it's [Rocío Ibarra|PERSON]'s number: [55 1234 5678|PHONE_NUMBER]",
    "what's the best time to visit Jordan, asking for me and [Kiri|PERSON]",
    "I told [B. Wüthrich|PERSON] to email [b.wuethrich@bluewin.ch|EMAIL_ADDRESS] not my work one",
    "grace period on the loan ends monday, remind me",
    "the plumber ([Tuomas Heikkinen|PERSON]) can only come between 8 and 10",
    "[Mehmet|PERSON] sent the deposit from [TR33 0006 1005 1978 6457 8413 26|IBAN_CODE] yesterday",
]
