"""The convention's table: wording -> verdict, one :class:`Rule` per row, with the reason.

The tiers are listed in the order of precedence that
:func:`bounce_tracker.classify.convention.decide` applies (its module docstring states
the convention and the order). Each pattern is matched against lower-cased text with
one space between words, in which addresses and URLs are replaced by placeholders
(``addr``, ``url``). Patterns are bounded: no nested quantifiers, every repetition
capped. Other languages' fragments come from :mod:`bounce_tracker.classify.languages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from bounce_tracker.classify import languages
from bounce_tracker.classify.patterns import Alternation

__all__ = [
    "DEAD_ADDRESS",
    "GENERIC_DEAD",
    "MAILBOX_STATE",
    "POLICY",
    "SENDER_SIDE",
    "TIERS",
    "WEAK_DEAD",
    "Rule",
    "Tier",
]


@dataclass(frozen=True)
class Rule:
    """One row of the convention: what the wording says, the verdict, and why."""

    name: str
    reason: str
    pattern: str


@dataclass(frozen=True)
class Tier:
    """Rules of the same verdict, tried together; see the module docstring for the order.

    ``verdict`` is ``"hard"``, ``"soft"`` or ``"status decides"`` (wording with no
    opinion of its own: hard only when the status doesn't name another cause).
    """

    name: str
    verdict: str
    rules: tuple[Rule, ...]

    def match(self, lowered: str) -> Rule | None:
        """The first rule of this tier whose pattern occurs in ``lowered``."""
        rule: Rule | None = self._matcher.first(lowered)
        return rule

    @cached_property
    def _matcher(self) -> Alternation:
        # Built on first use: importing the table compiles nothing.
        return Alternation([rule.pattern for rule in self.rules], self.rules)


SENDER_SIDE = Tier(
    "sender side",
    "soft",
    (
        Rule(
            "sender rejected",
            "the reply refuses our sender address, not the recipient",
            r"\bsender (?:address |domain |e-?mail |ip )?(?:<?addr>? )?(?:is |was )?(?:rejected"
            r"|denied|blocked|refused|not (?:a )?(?:allowed|authori[sz]ed|permitted|accepted"
            r"|verified|valid|found)|invalid|unknown|verify failed|verification failed"
            r"|does ?n[o']?t exist"
            r"|doesn't exist)",
        ),
        Rule(
            "sender invalid",
            "our sender address, domain or account is invalid, unverifiable or disabled",
            r"\b(?:invalid|unknown|unverified|unroutable|unrouteable|bad|banned|blocked|rejected"
            r"|forged) sender\b|\bsender verif|\bdomain of sender|\bsender(?:'s)? domain"
            r"|\bsender is (?:on|in|listed)|\bunauthorized sender|\babsender\b|\bexpéditeur\b"
            r"|\bremitente\b|\bsender\b[^.;]{0,30}\bnull ?mx\b|\b(?:sender|sending|authenticated"
            r"|outbound|submission)(?:'s)? (?:user |e-?mail )?(?:account|mailbox|user)\b"
            # Other languages name the sender too: "Адрес отправителя не существует".
            r"|" + languages.SENDER_SIDE,
        ),
        Rule(
            "mail from",
            "refused at MAIL FROM, before any recipient was named",
            r"\b(?:in reply to|after) mail from\b|\bmail from (?:rejected|denied|refused)",
        ),
        # "SPF record does not exist" is not a dead recipient.
        Rule(
            "sender authentication",
            "SPF, DKIM and DMARC are about the sender's domain",
            r"\bspf\b|\bdkim\b|\bdmarc\b",
        ),
        Rule(
            "client host",
            "our host's name, HELO or reverse DNS was refused",
            r"\bclient host (?:rejected|blocked|\[)|\bhelo\b|\behlo\b|\breverse (?:dns|lookup"
            r"|hostname)|\bptr record|\brdns\b|\bin reply to (?:helo|ehlo)|\bafter (?:helo"
            r"|ehlo|greeting)",
        ),
        Rule(
            "sending host",
            "our IP, server, network or account is refused, e.g. 'we no longer accept mail"
            " from this network'",
            r"\byour (?:ip|ip address|host|server|mail server|email server|network|mta|account)\b"
            r"|\bsending (?:ip|server|host|mta|domain)\b|\bconnecting (?:ip|host)\b"
            # Mail.ru: "message sending for this account is disabled" (our account).
            r"|\bsending (?:for|from|by) (?:this|your|the) (?:account|user)\b"
            r"|\b(?:from|for) (?:this|your) (?:network|ip|ip address|host|server|country"
            r"|region)\b",
        ),
    ),
)

MAILBOX_STATE = Tier(
    "mailbox state",
    "soft",
    (
        Rule(
            "mailbox full",
            "the mailbox exists and may have room later",
            r"\bquota\b|\bover ?quota|\bdsquota|mailbox (?:is )?full|\bfull (?:mailbox|inbox)"
            r"|(?:mailbox|mail ?box|inbox|mail ?folder|mail ?drop|mail ?file|account|storage"
            r"|disk|user)(?: is)?(?: currently)? full\b"
            r"|(?:insufficient|not enough|out of) (?:system )?(?:storage|disk space|space)"
            r"|exceeded (?:its |the |their )?(?:storage|disk space)|storage (?:allocation"
            r"|space|limit)|mailbox (?:size |storage )?limit|size limit of the mailbox"
            r"|too much mail|too many messages (?:in|on|stored)|space (?:has been )?used up"
            r"|\bmailbox size|" + languages.MAILBOX_FULL,
        ),
        Rule(
            "temporarily disabled",
            "a disabled or closed account that says it is temporary may come back",
            r"\btemporar\w* (?:disabled|deactivated|suspended|blocked|closed|locked|inactive)"
            r"|\b(?:disabled|deactivated|suspended|closed|locked|inactive) temporar",
        ),
        Rule(
            "mailbox suspended",
            "suspended, inactive, frozen or locked accounts can be reactivated",
            r"\b(?:account|mailbox|mail box|user|recipient|address|e-?mail|inbox|konto|postfach)"
            r"\b[^.;]{0,40}\b(?:suspended|inactive|inactivated|frozen|locked|on hold"
            r"|not (?:been )?activated|gesperrt)\b"
            r"|\b(?:suspended|inactive|frozen|locked) (?:account|mailbox|user|recipient|address)",
        ),
        Rule(
            "suspended (translated)",
            "suspended, blocked or temporarily disabled accounts in other languages",
            languages.SUSPENDED,
        ),
    ),
)

DEAD_ADDRESS = Tier(
    "dead address",
    "hard",
    (
        Rule(
            "user unknown",
            "the recipient's name with 'unknown', 'not found', 'does not exist'…",
            r"\b(?:user|recipient|mailbox|mail ?box|address|account|addressee|destination"
            r"|e-?mail(?: address)?|local ?part|alias|person|name)(?:s|\(s\))?"
            r"(?: (?:addr|<addr>|<[^<>\s]{1,64}>|\"[^\"]{0,64}\"|'[^']{0,64}'|\([^)]{0,64}\)))?:?"
            r" (?:is |was |has been |has |does )?"
            r"(?:unknown|not (?:found|known|recogni[sz]ed|present|listed|exist\w*|valid\b)"
            r"|invalid|nonexist\w*|non-existent|inexist\w*|does ?n[o']?t exist|doesn't exist)",
        ),
        Rule(
            "unknown user",
            "'unknown user', 'invalid recipient', 'not a valid mailbox'…",
            r"\b(?:unknown|invalid|bad|nonexist\w*|non-existent|inexist\w*|illegal|unrouteable"
            r"|unroutable|disallowed) (?:local |e-?mail |destination |recipient )?"
            r"(?:user|users|recipient|recipients|mailbox|address|e-?mail address|account"
            r"|addressee|alias|mailbox address|local ?part|destination address)\b"
            # Postfix's "undeliverable address: <the probe's reason>" (address
            # verification): the reason after the colon decides, e.g. a connection failure.
            r"|\bundeliverable (?:e-?mail |destination |recipient )?(?:user|recipient|mailbox"
            r"|address|e-?mail address|account)\b(?!:)"
            r"|\bnot (?:a )?(?:valid|known|local|existing) (?:user|recipient|mailbox|address"
            r"|e-?mail address|account)|\bis not a valid mailbox"
            # E-mail-to-SMS/MMS gateways and ISPs: "not a valid subscriber", Comcast's
            # "Not our Customer" (the address is nobody's there).
            r"|\bnot (?:a )?(?:valid|known|existing) (?:[\w-]{1,20} )?(?:subscriber|customer)\b"
            r"|\bnot our customer\b",
        ),
        Rule(
            "no such user",
            "'no such user', 'no mailbox here by that name'…",
            r"\bno such (?:user|mailbox|recipient|address|person|account|local user|e-?mail"
            r"|alias|addressee|mail ?box)|\bno (?:mailbox|mail box|account|user|one|such one)"
            r"(?: here)? (?:by|with|at|under) (?:that|this) (?:name|address)|\bno mailbox here"
            r"|\bno (?:mailbox|mail box|account) (?:available|found|exists)|\bthere is no "
            r"(?:one|user|mailbox|account|such)|\bdoesn't have an? [\w.-]{1,40} account"
            r"|\bdoes not have an? [\w.-]{1,40} account|\bnot have a mailbox"
            r"|\b(?:user|recipient|addressee) (?:has|have) no (?:mailbox|mail box|account)\b",
        ),
        Rule(
            "recipient not found",
            "Exchange's directory lookup found no such recipient",
            r"recip(?:ient)?notfound|resolver\.adr\.",
        ),
        # Microsoft's Directory-Based Edge Blocking: "550 5.4.1 Recipient address
        # rejected: Access denied. AS(201806281)" means the tenant has no such
        # recipient. Without 5.4.1 or the AS() mark it is Postfix's access(5) refusal.
        Rule(
            "access denied (directory-based edge blocking)",
            "Office 365 answers so, with 5.4.1 and an AS() code, for addresses not in the tenant",
            r"5\.4\.1 recipient address rejected: access denied"
            r"|recipient address rejected: access denied\. as\(\d{6,12}\)",
        ),
        Rule(
            "not listed",
            "Domino and directory gateways: the name is not in the directory",
            r"\bnot listed in (?:the |our )?(?:domino|public|global|local|name|address|directory"
            r"|names)",
        ),
        Rule(
            "unrecognized O/R name",
            "X.400 (ITU-T X.411, RFC 2156): the originator/recipient name is not known",
            r"\bunrecogni[sz]ed[- ](?:or|o/r)[- ]name\b",
        ),
        Rule(
            "moved",
            "the mailbox has moved (x.1.6, 551 user not local)",
            r"\b(?:has|have|mailbox|address|user|account|recipient)(?: been)? moved\b"
            r"|\bmoved (?:permanently|to a new)|\buser not local|\bnot local; please"
            r"|(?:address|e-?mail|mailbox) (?:has )?changed|\bnew (?:e-?mail )?address is",
        ),
        Rule(
            "closed",
            "the account is closed, deleted or discontinued for good",
            r"\b(?:account|mailbox|address|user|e-?mail|recipient)(?:'s)?"
            r"(?: (?:addr|is|was|has|been|permanently)){0,4}"
            r" (?:closed|deleted|terminated|removed|cancell?ed|discontinued|retired|purged"
            # "User account expired": a lapsed account (alumni, ISPs) is closed.
            r"|expired\b(?! password))"
            # qmail's bouncesaying "This address no longer accepts mail. (#5.2.1)": the
            # address itself is retired, whatever the status.
            r"|\b(?:address|account|mailbox|user|recipient)(?: is)? no longer (?:accepts?"
            r"|receives?|exists?|in use|valid|active)\b"
            # A gateway's "550 user has left the company": the person's account is gone.
            r"|\b(?:user|recipient|addressee|person|employee)(?: \w{1,20}){0,2} (?:has )?left"
            r" (?:the|our|this) (?:company|organi[sz]ation|firm|university|school)",
        ),
        Rule(
            "disabled",
            "a disabled or deactivated account, with no word that it is temporary",
            r"\b(?:account|mailbox|mail box|user|recipient|address|mail ?address|inbox|konto"
            r"|postfach)\b[^.;]{0,40}\b(?:disabled|deactivated|discontinued|deaktiviert"
            r"|désactivée?|desactivad[ao])\b(?! for (?!good\b|ever\b))"
            r"(?! by (?:[\w-]{1,20} ){0,2}polic)"
            r"|\b(?:disabled|deactivated|discontinued) (?:account|mailbox|user|recipient|address)",
        ),
        Rule(
            "domain not found",
            "the recipient's domain does not exist or has no mail host",
            r"\b(?:host|domain)(?: name)?(?: or domain name)? (?:is )?(?:not found|unknown"
            r"|does ?n[o']?t exist|doesn't exist|not exist|not registered|invalid)"
            r"|\b(?:unknown|invalid|nonexist\w*|non-existent) (?:host|domain)|\bno such domain"
            r"|\bnxdomain\b|\bname or service not known|\bcouldn't find any host|could not find"
            r" any host|\bno (?:mx|mail exchanger)(?: or a)?(?: records?| or ip address)?"
            r" (?:for|found|or ip)|\bno mx\b|\bmx records? points? to non-?existent"
            r"|\bnon-?existent (?:hosts?|domain)|\bhost unknown|\bnon ?existent ?domain"
            r"|\bdomain name not found|\bunrout(?:e)?able (?:mail )?(?:address|domain)"
            r"|\bunknown mail domain|\bhost not found"
            # hMailServer: "No mail servers appear to exists for the recipients address."
            r"|\bno mail servers? (?:appears? to )?exists? for",
        ),
        Rule(
            "domain accepts no mail",
            "RFC 7505 null MX: the domain accepts no mail at all",
            r"\bnull ?mx\b|\bnullmx\b|\baccepts no (?:e-?)?mail\b(?! from)",
        ),
        Rule(
            "domain not found (translated)",
            "the recipient's domain does not exist, in other languages",
            languages.DOMAIN_NOT_FOUND,
        ),
        Rule(
            "user unknown (translated)",
            "the same in other languages (classify/languages.py)",
            languages.DEAD_ADDRESS,
        ),
    ),
)

POLICY = Tier(
    "policy and other failures",
    "soft",
    (
        Rule(
            "spam",
            "spam verdicts and blocklists judge the message or sender",
            r"\bspam(?:my|mer|mers|ming)?\b|\bunsolicited|\bjunk\b|\bphish|\bbulk (?:e-?)?mail"
            r"|\bspamhaus|\bspamcop|\bsorbs\b|\bbarracuda|\babuse\b|\bcomplaints?\b",
        ),
        Rule(
            "blocked",
            "blocklists and blocks say nothing about the address",
            r"\bblock(?:ed|ing|list\w*)?\b|\bblack ?list\w*|\bdeny ?list|\bbanned\b|\brbl\b"
            r"|\bdnsbl|\blisted (?:at|on|in|by)\b|\brealtime|\bblackhole",
        ),
        Rule("reputation", "reputation is the sender's", r"\breputation"),
        Rule(
            "policy (translated)",
            "spam, blocklists and refusals in other languages",
            languages.POLICY,
        ),
        Rule(
            "policy",
            "'access denied' (Postfix access(5)), prohibited, not allowed: a policy refusal",
            r"\bpolic(?:y|ies)\b|\bprohibited|\bnot (?:permitted|allowed|authori[sz]ed)"
            r"|\bunauthori[sz]ed|\bforbidden|\bdenied\b|\brefused\b|\brefuses\b"
            r"|\bfilter(?:ed|ing)?\b|\bnot accept(?:ed|ing)\b|\brejected (?:for|due|because|as|by)",
        ),
        Rule(
            "authentication",
            "authentication concerns the sender",
            r"\bauthenticat|\bunauthenticated|\bspoof",
        ),
        Rule(
            "content",
            "the message's content was refused, not the address",
            r"\bcontent\b(?!-)|\bvirus|\bmalware|\binfected|\battachment|\bsuspicious"
            r"|\bmessage body",
        ),
        Rule(
            "too large",
            "the message's size was refused",
            r"\btoo (?:large|big|long)\b|\bmessage size|\bsize limit|\bexceeds? (?:the )?"
            r"(?:maximum|size|message|fixed)|\bmaximum (?:message )?size|\bmessage length",
        ),
        Rule(
            "rate limited",
            "rate limits pass",
            r"\btoo many\b|\brate\b|\brate[- ]?limit|\bthrottl|\bexceeded the (?:maximum )?number"
            r"|\blimit (?:exceeded|reached)|\bsending limit|\bfrequency",
        ),
        Rule(
            "temporary",
            "the reply says to try again",
            # Not "check the address and try again": advice to the sender, no temporary cause.
            r"\btry (?:again later|later|resending later|again in)|(?<!and )\btry again\b"
            r"|\bplease retry|\btemporar|\bgr[ae]y-?list"
            r"|\bdefer(?:red)?\b|\bbusy\b|\boverloaded|\binsufficient system|\bresources?\b"
            r"|" + languages.TEMPORARY,
        ),
        Rule(
            "tls",
            "TLS and certificate requirements (a certificate that 'could not be found')",
            r"\btls\b|\bstarttls|\bssl\b|\bcertificate|\bhandshake|\bcipher",
        ),
        Rule(
            "network",
            "network and DNS trouble that is not a clean NXDOMAIN",
            r"\btime ?d? ?out\b|\btimed out|\btime-out|\bconnection (?:refused|reset|closed|lost"
            r"|dropped|timed|failed)|\blost connection|\brefused to talk|\bnetwork|\bunreachable"
            r"|\bno route|\b(?:could not|couldn't|unable to|failed to|cannot|can't) connect"
            r"|\bconnect to\b|\bdns (?:error|failure|lookup)|\bservfail|\bmalformed"
            # GMX/WEB.DE: "mailbox unavailable / invalid DNS MX or A/AAAA resource record"
            # is about the sender's domain.
            r"|\binvalid dns\b|\bresource records?\b"
            # Outlook.com's "554 5.4.4 [internal] Domain Lookup Failed": DNS trouble of
            # some kind, not a clean NXDOMAIN.
            r"|\blookup failed\b"
            r"|\bname ?server",
        ),
        Rule(
            "loop",
            "a mail loop is a configuration fault",
            r"\bloop(?:s|ing|ed)?\b|\bhop count|\btoo many hops|\bmax(?:imum)? hops",
        ),
        Rule(
            "expired",
            "the queue gave up: the address was never judged",
            r"\bexpired\b|\bretry timeout|\bdelivery time|\bin (?:the )?queue|\bgiving up"
            r"|\bgave up|\bgiven up|\bcould not be delivered (?:for|within)",
        ),
        Rule(
            "relay denied",
            "relaying refused: the route, not the address",
            r"\brelay(?:ing)? (?:access )?(?:denied|not permitted|not allowed|prohibited|refused)"
            r"|\bunable to relay|\bnot permitted to relay|\bcannot relay|\bdo not relay"
            r"|\brelay not permitted|\brcpthosts\b|\bnot (?:a )?(?:gateway|relay)",
        ),
        Rule(
            "system error",
            "a fault of the receiving system",
            r"\bservice (?:is )?(?:unavailable|not available)|\bsystem error"
            r"|\binternal (?:server )?error|\blocal error|\bserver error|\bconfiguration error"
            r"|\bmisconfigur"
            r"|\bmailer error|\bprotocol error|\bsyntax error|\bcommand (?:not )?(?:recognized"
            r"|unrecognized)|\btransport (?:unavailable|error)",
        ),
    ),
)

GENERIC_DEAD = Tier(
    "generic phrases",
    "status decides",
    (
        Rule(
            "not found",
            "'could not be found' may be about a certificate, a host or a route",
            r"\b(?:could ?n[o']?t|can ?not|can't|wasn't|was not|were not) (?:be )?found\b"
            r"|\bnot be found\b|\bfailed to find\b|\bcouldn't find\b",
        ),
        Rule(
            "does not exist",
            "'does not exist' without saying what",
            r"\bdo(?:es)? ?n[o']?t exist|\bdoesn't exist|\bdoesnt exist|\bnot exist\b"
            r"|\bno longer exists?|" + languages.GENERIC_DEAD,
        ),
        Rule(
            "no longer",
            "'no longer' may be about a network or a service",
            r"\bno longer\b|" + languages.NO_LONGER,
        ),
        Rule(
            "does not accept mail",
            "'does not accept mail' may be a policy",
            r"\bdo(?:es)? ?n[o']?t (?:accept|receive) (?:any )?(?:e-?)?mail",
        ),
    ),
)

WEAK_DEAD = Tier(
    "weak recipient wording",
    "status decides",
    (
        Rule(
            "mailbox unavailable",
            "RFC 5321's text for 550; also used for policy refusals",
            r"\bmailbox (?:is )?(?:currently )?(?:unavailable|not available)"
            r"|\baction not taken: mailbox|\bmailbox name not allowed",
        ),
        Rule(
            "recipient rejected",
            "the recipient was refused without a reason",
            r"\b(?:recipient|rcpt|address|user|mailbox)(?: address)? (?:was )?rejected"
            r"|\bbad destination|\binvalid recipient",
        ),
    ),
)

#: Every tier, in the order of precedence.
TIERS = (SENDER_SIDE, MAILBOX_STATE, DEAD_ADDRESS, POLICY, GENERIC_DEAD, WEAK_DEAD)
