"""Hard or soft: what a failure's status code and wording say about the address.

:func:`failure_kind` is the one decision used for every failed recipient, whether
the report is a standard DSN or free text. It weighs the RFC 3463 enhanced status
code and the diagnostic text together, and the text wins when they disagree: real
MTAs send ``5.1.1`` for a full mailbox, ``5.7.1`` for an unknown user, ``5.0.0`` for
everything, or no enhanced code at all.

Hard means the address itself is dead: no such user, no such domain (or a domain
that accepts no mail, RFC 7505 null MX), moved or closed for good. Everything else
is soft, even with a 5.x.x code. The rules are tried in tiers, first match wins:

1. sender-side problems (our sender address, our IP, HELO, reverse DNS, 5.1.7/5.1.8):
   soft, because they say nothing about the recipient;
2. the recipient's mailbox state (full, over quota, disabled, suspended, inactive):
   soft, even when the same reply also says "unknown" or uses 5.1.1;
3. the address is dead (unknown user, no such mailbox/domain, null MX, moved,
   closed): hard, unless the wording says the lookup failed only for now;
4. any other failure wording (spam, blocked, policy, rate, size, relay, network,
   expiry, loops…): soft;
5. weak recipient wording ("mailbox unavailable", "recipient rejected" with a 55x
   reply and nothing else said): hard;
6. the status code alone: 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.4.4 and 5.4.310 are
   hard, everything else soft;
7. a bare basic reply code: 551 (user not local) is hard; a bare 550 or 553 is soft.
   Many 550s without text are unknown users, but as many are policy blocks, and a
   wrongly suppressed address costs more than one more soft bounce.

A hard verdict becomes soft when the failure was temporary: a 4.x.x status (or 4xx
reply) with no 5xx code anywhere in the text, e.g. a queue that expired while the
remote side kept answering "450 user unknown".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bounce_tracker.classify.text import ADDRESS_LIKE_RE, WS_RE
from bounce_tracker.core.kinds import BounceKind

#: Characters of diagnostic text the decision looks at.
MAX_DECISION_CHARS = 6000

# An RFC 3463 code: class 2/4/5, subject 0-7, detail up to three digits. Not part of a
# longer dotted number (IP addresses, versions, dates): no word character or dot
# before it, no further ".digit" after it.
ENHANCED_CODE_RE = re.compile(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?!\.?\d)")
# A basic SMTP reply code where replies are quoted: at a line start, after "said",
# "reply", "error", "<<<", "smtp;", a colon, quote or bracket, or right before an
# enhanced code ("550 5.1.1", "550-5.1.1"). A number in running text is not one.
BASIC_CODE_RE = re.compile(
    r"(?:^|<<<|said|repl(?:y|ied)|error|response|returned|reason|smtp|code|['\"(\[#:;])"
    r"[ \t]*[:;]?[ \t]*([245][0-5]\d)(?=[ \t:-]|$)"
    r"|(?<![\w.])([245][0-5]\d)[ -](?=[245]\.[0-7]\.\d)",
    re.MULTILINE | re.IGNORECASE,
)

HARD_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.4.4", "5.4.310"})
SENDER_STATUSES = frozenset({"5.1.7", "5.1.8", "4.1.7", "4.1.8"})
# Statuses too generic to name a cause other than the address: they make "mailbox
# unavailable"-style wording (tier 5) believable. See is_generic_status().
_GENERIC_STATUS_RE = re.compile(r"^5\.(?:0\.0|1\.\d+|5\.0)$")

_URL_RE = re.compile(r"(?:https?|ftp)://[^\s<>\"')\]]{1,2000}", re.IGNORECASE)


def _rules(*pairs: tuple[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation for a tier; ``lastgroup`` names the rule that matched."""
    names = {f"r{i}": name for i, (name, _) in enumerate(pairs)}
    pattern = "|".join(f"(?P<r{i}>{body})" for i, (_, body) in enumerate(pairs))
    return re.compile(pattern), names


# Tier 1: the problem is on the sending side. Matched against lower-cased text.
_SENDER = _rules(
    (
        "sender rejected",
        r"\bsender (?:address |domain |e-?mail |ip )?(?:is )?(?:rejected|denied|blocked|refused"
        r"|not (?:allowed|authori[sz]ed|permitted|accepted|verified|valid)|invalid|unknown"
        r"|verify failed|verification failed)",
    ),
    (
        "sender invalid",
        r"\b(?:invalid|unknown|unverified|unroutable|unrouteable|bad|banned|blocked|rejected"
        r"|forged) sender\b|\bsender verif|\bdomain of sender|\bsender(?:'s)? domain"
        r"|\bsender is (?:on|in|listed)|\bunauthorized sender",
    ),
    ("mail from", r"\b(?:in reply to|after) mail from\b|\bmail from (?:rejected|denied|refused)"),
    # SPF, DKIM and DMARC are about the sender's domain, whatever else the reply says
    # ("SPF record does not exist" is not a dead recipient).
    ("sender authentication", r"\bspf\b|\bdkim\b|\bdmarc\b"),
    (
        "client host",
        r"\bclient host (?:rejected|blocked|\[)|\bhelo\b|\behlo\b|\breverse (?:dns|lookup|hostname)"
        r"|\bptr record|\brdns\b|\bin reply to (?:helo|ehlo)|\bafter (?:helo|ehlo|greeting)",
    ),
    (
        "sending host",
        r"\byour (?:ip|ip address|host|server|mail server|email server|network|mta)\b"
        r"|\bsending (?:ip|server|host|mta|domain)\b|\bconnecting (?:ip|host)\b",
    ),
)

# Tier 2: the mailbox exists but can't take mail now.
_MAILBOX_STATE = _rules(
    (
        "mailbox full",
        r"\bquota\b|\bover ?quota|\bdsquota|mailbox (?:is )?full|\bfull (?:mailbox|inbox)"
        r"|(?:mailbox|mail ?box|inbox|mail ?folder|mail ?drop|account|storage|disk|user)"
        r"(?: is)?(?: currently)? full\b"
        r"|(?:insufficient|not enough|out of) (?:system )?(?:storage|disk space|space)"
        r"|exceeded (?:its |the |their )?(?:storage|disk space)|storage (?:allocation|space|limit)"
        r"|mailbox (?:size |storage )?limit|size limit of the mailbox|too much mail"
        r"|too many messages (?:in|on|stored)|space (?:has been )?used up|\bmailbox size"
        r"|postfach (?:ist )?voll|boîte (?:\w+ )?pleine|boite (?:\w+ )?pleine|casella piena"
        r"|buz[oó]n (?:\w+ )?lleno|caixa (?:postal )?cheia|\bpleine\b",
    ),
    (
        "mailbox disabled",
        r"\b(?:account|mailbox|mail box|user|recipient|address|e-?mail|inbox|konto|postfach)"
        r"\b[^.;]{0,40}\b(?:disabled|suspended|deactivated|inactive|inactivated|frozen|locked"
        r"|on hold|not (?:been )?activated|gesperrt|deaktiviert|désactivée?|desactivad[ao])\b"
        r"|\b(?:disabled|suspended|deactivated|inactive|frozen|locked) (?:account|mailbox|user"
        r"|recipient|address)",
    ),
)

# Tier 3: the address is dead. Rules named "domain…" are DNS verdicts that a
# "try again"-style remark turns into a temporary failure.
_DEAD = _rules(
    (
        "user unknown",
        r"\b(?:user|recipient|mailbox|mail ?box|address|account|addressee|destination"
        r"|e-?mail(?: address)?|local ?part|alias|person|name)(?:s|\(s\))?"
        r"(?: (?:addr|<addr>|\"[^\"]{0,64}\"|'[^']{0,64}'|\([^)]{0,64}\)))?:?"
        r" (?:is |was |has been |has |does )?"
        r"(?:unknown|not (?:found|known|recogni[sz]ed|present|listed|exist\w*|valid\b)"
        r"|invalid|nonexist\w*|non-existent|inexist\w*|does ?n[o']?t exist|doesn't exist)",
    ),
    (
        "unknown user",
        r"\b(?:unknown|invalid|bad|nonexist\w*|non-existent|inexist\w*|illegal|unrouteable"
        r"|unroutable|undeliverable|disallowed) (?:local |e-?mail |destination |recipient )?"
        r"(?:user|users|recipient|recipients|mailbox|address|e-?mail address|account|addressee"
        r"|alias|mailbox address|local ?part|destination address)\b"
        r"|\bnot (?:a )?(?:valid|known|local|existing) (?:user|recipient|mailbox|address"
        r"|e-?mail address|account)|\bis not a valid mailbox",
    ),
    (
        "no such user",
        r"\bno such (?:user|mailbox|recipient|address|person|account|local user|e-?mail"
        r"|alias|addressee|mail ?box)|\bno (?:mailbox|mail box|account|user|one|such one)"
        r"(?: here)? (?:by|with|at|under) (?:that|this) (?:name|address)|\bno mailbox here"
        r"|\bno (?:mailbox|mail box|account) (?:available|found|exists)|\bthere is no "
        r"(?:one|user|mailbox|account|such)|\bdoesn't have an? [\w.-]{1,40} account"
        r"|\bdoes not have an? [\w.-]{1,40} account|\bnot have a mailbox",
    ),
    (
        "recipient not found",
        r"recip(?:ient)?notfound|resolver\.adr\.(?:exrecip|recip|invalidsmtpaddress)"
        r"|\bresolver\.adr\.|\b(?:could ?n[o']?t|can ?not|can't|wasn't|was not|were not)"
        r" (?:be )?found\b|\bnot be found\b|\bfailed to find\b|\bcouldn't find\b",
    ),
    (
        "does not exist",
        r"\bdo(?:es)? ?n[o']?t exist|\bdoesn't exist|\bdoesnt exist|\bnot exist\b"
        r"|\bno longer exists?",
    ),
    # Microsoft's directory-based edge blocking: "550 5.4.1 Recipient address rejected:
    # Access denied" means the tenant has no such recipient.
    ("access denied", r"recipient address rejected: access denied"),
    (
        "not listed",
        r"\bnot listed in (?:the |our )?(?:domino|public|global|local|name|address|directory"
        r"|names)",
    ),
    (
        "moved",
        r"\b(?:has|have|mailbox|address|user|account|recipient)(?: been)? moved\b"
        r"|\bmoved (?:permanently|to a new)|\buser not local|\bnot local; please"
        r"|(?:address|e-?mail|mailbox) (?:has )?changed|\bnew (?:e-?mail )?address is",
    ),
    (
        "no longer",
        r"\bno longer\b|\bnicht mehr\b|\bn'est plus\b|\bya no\b|\bnon (?:è|e) più\b",
    ),
    (
        "closed",
        r"\b(?:account|mailbox|address|user|e-?mail|recipient)(?:'s)?"
        r"(?: (?:addr|is|was|has|been|permanently)){0,4}"
        r" (?:closed|deleted|terminated|removed|cancell?ed|discontinued|retired|purged"
        r"|expired and removed)",
    ),
    (
        "domain not found",
        r"\b(?:host|domain)(?: name)?(?: or domain name)? (?:is )?(?:not found|unknown"
        r"|does ?n[o']?t exist|doesn't exist|not exist|not registered|invalid)"
        r"|\b(?:unknown|invalid|nonexist\w*|non-existent) (?:host|domain)|\bno such domain"
        r"|\bnxdomain\b|\bname or service not known|\bcouldn't find any host|could not find any"
        r" host|\bno (?:mx|mail exchanger)(?: or a)?(?: records?| or ip address)?"
        r" (?:for|found|or ip)|\bno mx\b|\bmx records? points? to non-?existent"
        r"|\bnon-?existent (?:hosts?|domain)|\bhost unknown|\bnon ?existent ?domain"
        r"|\bdomain name not found|\bunrout(?:e)?able (?:mail )?(?:address|domain)"
        r"|\bunknown mail domain|\bhost not found",
    ),
    (
        "domain accepts no mail",
        r"\bnull ?mx\b|\bnullmx\b|\bdo(?:es)? ?n[o']?t (?:accept|receive) (?:any )?(?:e-?)?mail"
        r"|\baccepts no (?:e-?)?mail",
    ),
    (
        "user unknown (translated)",
        r"benutzer (?:ist )?unbekannt|unbekannter? (?:benutzer|empfänger|adresse|nutzer)"
        r"|empfänger (?:ist )?unbekannt|existiert nicht|utilisateur inconnu|destinataire "
        r"(?:inconnu|invalide)|adresse (?:invalide|inconnue|inexistante)|n'existe pas"
        r"|usuario (?:desconocido|inexistente|no existe)|\bno existe\b|utente (?:sconosciuto"
        r"|inesistente)|non esiste|indirizzo (?:inesistente|errato|non valido)|onbekende "
        r"(?:gebruiker|ontvanger)|bestaat niet|usu[aá]rio (?:desconhecido|inexistente)"
        r"|não existe|nie istnieje|neexistuje|не существует|нет такого|несуществующ",
    ),
)

# Tier 4: any other failure wording.
_OTHER_FAILURE = _rules(
    (
        "spam",
        r"\bspam(?:my|mer|mers|ming)?\b|\bunsolicited|\bjunk\b|\bphish|\bbulk (?:e-?)?mail"
        r"|\bspamhaus|\bspamcop|\bsorbs\b|\bbarracuda|\babuse\b|\bcomplaints?\b",
    ),
    (
        "blocked",
        r"\bblock(?:ed|ing|list\w*)?\b|\bblack ?list\w*|\bdeny ?list|\bbanned\b|\brbl\b"
        r"|\bdnsbl|\blisted (?:at|on|in|by)\b|\brealtime|\bblackhole",
    ),
    ("reputation", r"\breputation"),
    (
        "policy",
        r"\bpolic(?:y|ies)\b|\bprohibited|\bnot (?:permitted|allowed|authori[sz]ed)"
        r"|\bunauthori[sz]ed|\bforbidden|\bdenied\b|\brefused\b|\brefuses\b|\bfilter(?:ed|ing)?\b"
        r"|\bnot accept(?:ed|ing)\b|\brejected (?:for|due|because|as|by)",
    ),
    (
        "authentication",
        r"\bdmarc\b|\bspf\b|\bdkim\b|\bauthenticat|\bunauthenticated|\bspoof",
    ),
    (
        "content",
        r"\bcontent\b(?!-)|\bvirus|\bmalware|\binfected|\battachment|\bsuspicious|\bmessage body",
    ),
    (
        "too large",
        r"\btoo (?:large|big|long)\b|\bmessage size|\bsize limit|\bexceeds? (?:the )?"
        r"(?:maximum|size|message|fixed)|\bmaximum (?:message )?size|\bmessage length",
    ),
    (
        "rate limited",
        r"\btoo many\b|\brate\b|\brate[- ]?limit|\bthrottl|\bexceeded the (?:maximum )?number"
        r"|\blimit (?:exceeded|reached)|\bsending limit|\bfrequency",
    ),
    (
        "temporary",
        r"\btry (?:again|later|resending later)|\bplease retry|\btemporar|\bgr[ae]y-?list"
        r"|\bdefer(?:red)?\b|\bbusy\b|\boverloaded|\binsufficient system|\bresources?\b",
    ),
    (
        "network",
        r"\btime ?d? ?out\b|\btimed out|\btime-out|\bconnection (?:refused|reset|closed|lost"
        r"|dropped|timed|failed)|\blost connection|\brefused to talk|\bnetwork|\bunreachable"
        r"|\bno route|\b(?:could not|couldn't|unable to|failed to|cannot|can't) connect"
        r"|\bconnect to\b|\btls\b|\bstarttls|\bssl\b|\bcertificate|\bhandshake"
        r"|\bdns (?:error|failure|lookup)|\bservfail",
    ),
    ("loop", r"\bloop(?:s|ing|ed)?\b|\bhop count|\btoo many hops|\bmax(?:imum)? hops"),
    (
        "expired",
        r"\bexpired\b|\bretry timeout|\bdelivery time|\bin (?:the )?queue|\bgiving up"
        r"|\bgave up|\bgiven up|\bcould not be delivered (?:for|within)",
    ),
    (
        "relay denied",
        r"\brelay(?:ing)? (?:access )?(?:denied|not permitted|not allowed|prohibited|refused)"
        r"|\bunable to relay|\bnot permitted to relay|\bcannot relay|\bdo not relay"
        r"|\brelay not permitted|\brcpthosts\b|\bnot (?:a )?(?:gateway|relay)",
    ),
    (
        "system error",
        r"\bservice (?:is )?(?:unavailable|not available)|\bsystem error|\binternal (?:server )?"
        r"error|\blocal error|\bserver error|\bconfiguration error|\bmisconfigur|\bmailer error"
        r"|\bprotocol error|\bsyntax error|\bcommand (?:not )?(?:recognized|unrecognized)"
        r"|\btransport (?:unavailable|error)",
    ),
)

# Tier 5: recipient wording too weak to win against anything else.
_WEAK_DEAD = _rules(
    (
        "mailbox unavailable",
        r"\bmailbox (?:is )?(?:currently )?(?:unavailable|not available)"
        r"|\baction not taken: mailbox|\bmailbox name not allowed",
    ),
    (
        "recipient rejected",
        r"\b(?:recipient|rcpt|address|user|mailbox)(?: address)? (?:was )?rejected"
        r"|\bbad destination|\binvalid recipient",
    ),
)

_DNS_TEMPORARY_RE = re.compile(
    r"\btry again|\btemporar|\bservfail|\btime ?d? ?out|\btime-out|\blookup fail"
    r"|\bdns (?:server|lookup) (?:fail|error)|\bname server (?:failure|timeout)"
    r"|\bnot (?:yet )?(?:reached|reachable)"
)
_PERMANENT_CODE_RE = re.compile(r"(?<![\w.])5\.[0-7]\.\d|(?:^|[\s'\"(#;:<\[-])5[0-5]\d(?=[ \-]|$)")


def enhanced_codes(text: str) -> list[str]:
    """Every RFC 3463 code in ``text``, in order, normalized (``"5.1.1"``)."""
    return [f"{a}.{b}.{int(c)}" for a, b, c in ENHANCED_CODE_RE.findall(text[:MAX_DECISION_CHARS])]


def basic_codes(text: str) -> list[int]:
    """The SMTP reply codes (``550``…) quoted in ``text``, in order."""
    found: list[int] = []
    for match in BASIC_CODE_RE.finditer(text[:MAX_DECISION_CHARS]):
        code = match.group(1) or match.group(2)
        found.append(int(code))
    return found


def normalize_status(value: str | None) -> str | None:
    """The first RFC 3463 code in a ``Status`` value (``"5.1.1 (user unknown)"``)."""
    if not value:
        return None
    codes = enhanced_codes(value)
    return codes[0] if codes else None


def best_status(codes: Sequence[str]) -> str | None:
    """The most telling of several codes: the first failure code that isn't x.0.0."""
    failures = [code for code in codes if code[0] in "45"]
    for code in failures:
        if not code.endswith(".0.0"):
            return code
    return failures[0] if failures else None


def is_generic_status(status: str) -> bool:
    """Whether ``status`` is too generic to show a cause other than the address.

    5.0.0, any 5.1.x and 5.5.0: MTAs send them for unknown users and for much else,
    so they neither prove the address dead nor show another cause (unlike, say,
    5.2.2 for a full mailbox or 5.7.1 for a policy refusal).
    """
    return _GENERIC_STATUS_RE.match(status) is not None


def normalize_text(text: str) -> str:
    """Lower case, one space between words; URLs and addresses replaced by placeholders.

    Addresses and URLs carry words ("spam@…", "…/policy") that must not decide.
    """
    text = text[:MAX_DECISION_CHARS]
    text = _URL_RE.sub(" url ", text)
    text = ADDRESS_LIKE_RE.sub("addr", text)
    return WS_RE.sub(" ", text).strip().lower()


def failure_evidence(text: str) -> bool:
    """Whether ``text`` states a failure: a 4xx/5xx code, or wording some rule knows."""
    if any(code[0] in "45" for code in enhanced_codes(text)):
        return True
    if any(code >= 400 for code in basic_codes(text)):
        return True
    lowered = normalize_text(text)
    return any(
        _match(rules, lowered)
        for rules in (_SENDER, _MAILBOX_STATE, _DEAD, _OTHER_FAILURE, _WEAK_DEAD)
    )


def _match(rules: tuple[re.Pattern[str], dict[str, str]], text: str) -> str | None:
    pattern, names = rules
    match = pattern.search(text)
    if match is None or match.lastgroup is None:
        return None
    return names[match.lastgroup]


def failure_kind(status: str | None, text: str) -> tuple[BounceKind, str]:
    """HARD or SOFT for one failed recipient, and the name of the rule that decided.

    ``status`` is the enhanced status code (``"5.1.1"``) or None; ``text`` is the
    diagnostic: the Diagnostic-Code value, the quoted SMTP reply, or the sentence of a
    free-text bounce that names the failure. See the module docstring for the tiers.
    """
    lowered = normalize_text(text)
    status = normalize_status(status) or best_status(enhanced_codes(text))
    codes = basic_codes(text)
    temporary = _is_temporary(status, codes, lowered)

    if status in SENDER_STATUSES:
        return BounceKind.SOFT, f"status:{status} sender"
    rule = _match(_SENDER, lowered)
    if rule:
        return BounceKind.SOFT, f"text:{rule}"
    rule = _match(_MAILBOX_STATE, lowered)
    if rule:
        return BounceKind.SOFT, f"text:{rule}"
    rule = _match(_DEAD, lowered)
    if rule:
        if rule.startswith("domain") and _DNS_TEMPORARY_RE.search(lowered):
            return BounceKind.SOFT, "text:dns lookup failed for now"
        if temporary:
            return BounceKind.SOFT, f"temporary:{rule}"
        return BounceKind.HARD, f"text:{rule}"
    rule = _match(_OTHER_FAILURE, lowered)
    if rule:
        return BounceKind.SOFT, f"text:{rule}"
    rule = _match(_WEAK_DEAD, lowered)
    if rule and not temporary:
        weak_ok = status is None or is_generic_status(status)
        if weak_ok and (status is not None or any(c in (550, 553) for c in codes)):
            return BounceKind.HARD, f"text:{rule}"
    if status is not None:
        if status in HARD_STATUSES:
            return BounceKind.HARD, f"status:{status}"
        return BounceKind.SOFT, f"status:{status}"
    if codes:
        if codes[0] == 551 and not temporary:
            return BounceKind.HARD, "code:551"
        return BounceKind.SOFT, f"code:{codes[0]}"
    return BounceKind.SOFT, "failed"


def _is_temporary(status: str | None, codes: list[int], lowered: str) -> bool:
    """A 4.x.x status (or 4xx reply) with no permanent code anywhere in the text."""
    if status is not None:
        if status[0] != "4":
            return False
    elif not codes or codes[0] // 100 != 4:
        return False
    return _PERMANENT_CODE_RE.search(lowered) is None
