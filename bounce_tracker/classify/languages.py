"""What bounce reports say in languages other than English, in one place.

The English tables live where they are used (:mod:`~bounce_tracker.classify.convention`
for hard and soft, :mod:`~bounce_tracker.classify.wording` for recognising a report,
:mod:`~bounce_tracker.classify.auto_reply` for auto-replies); each of them takes the
matching alternation from here, so a language is added in one module without touching
the English rules. Every value is a regular expression *fragment* (an alternation,
no flags, no anchors of its own) written in lower case: the convention matches
lower-cased, space-normalized text, and the other tables compile with
``re.IGNORECASE``. Each fragment must do bounded work per position (no nested
repetition).

Text reaches these patterns decoded: MIME parts and encoded words in their declared
charset (ISO-2022-JP, Shift_JIS, EUC-JP, GB2312/GBK, Big5, KOI8-R, windows-1251,
UTF-7…), quoted-printable and base64 undone (:mod:`~bounce_tracker.classify.mime`).
"""

from __future__ import annotations

#: The recipient does not exist (the convention's hard tier): "user unknown" and
#: its kin.
DEAD_ADDRESS = (
    r"benutzer (?:ist )?unbekannt|unbekannter? (?:benutzer|empfänger|adresse|nutzer)"
    r"|empfänger (?:ist )?unbekannt|existiert nicht|utilisateur inconnu|destinataire "
    r"(?:inconnu|invalide)|adresse (?:invalide|inconnue|inexistante)|n'existe pas"
    r"|usuario (?:desconocido|inexistente|no existe)|\bno existe\b|utente (?:sconosciuto"
    r"|inesistente)|non esiste|indirizzo (?:inesistente|errato|non valido)|onbekende "
    r"(?:gebruiker|ontvanger)|bestaat niet|usu[aá]rio (?:desconhecido|inexistente)"
    r"|não existe|nie istnieje|neexistuje|не существует|нет такого|несуществующ"
)

#: The mailbox exists but is full (soft).
MAILBOX_FULL = (
    r"postfach (?:ist )?voll|boîte (?:\w+ )?pleine|boite (?:\w+ )?pleine"
    r"|casella piena|buz[oó]n (?:\w+ )?lleno|caixa (?:postal )?cheia|\bpleine\b"
)

#: "No longer": generic, decided by the status like its English form.
NO_LONGER = r"\bnicht mehr\b|\bn'est plus\b|\bya no\b|\bnon (?:è|e) più\b"

#: Subjects of bounce reports.
BOUNCE_SUBJECT = (
    r"unzustellbar|nicht zustellbar|non remis|non recapitabile|onbestelbaar|no se puede entregar"
    r"|não (?:é possível )?entreg|n'a pas pu|échec de (?:la )?remise|ej levererbart|ikke levere"
    r"|kunne ikke leveres|niedostarczaln|nedoručiteln|недоставл|配信不能|無法傳遞|无法投递"
)

#: Sentences that make a report a bounce together with another sign.
WEAK_BOUNCE_MARKER = (
    r"konnte nicht zugestellt|n'a pas pu être (?:remis|distribué|délivré)"
    r"|no (?:se )?pud(?:o|e) (?:ser )?entregar|non è stato possibile recapitare"
    r"|kon niet worden (?:bezorgd|afgeleverd)|não pôde ser entregue"
)

#: A delay: delivery is still being tried.
DELAY = r"zustellung verzögert|remise différée"

#: Subjects of auto-replies (out of office, vacation, automatic answer).
AUTO_REPLY_SUBJECT = (
    r"abwesenheit|réponse automatique|respuesta autom[aá]tica|risposta automatica"
    r"|automatisch antwoord|resposta autom[aá]tica|automaattinen vastaus"
    r"|automatyczna odpowied|автоответ|автоматический ответ|自動返信|自动回复|自動回覆"
    r"|fuera de la oficina|absence du bureau"
)

#: Opening sentences of auto-replies that carry no RFC 3834 header.
AUTO_REPLY_BODY = (
    r"\bich bin (?:bis|vom|ab|derzeit|zurzeit|momentan|nicht)\b|\bnicht im büro"
    r"|\bje suis (?:actuellement )?absente?\b|\bestoy fuera de la oficina|\bme encuentro fuera"
    r"|\bsono (?:fuori ufficio|assente)|\bik ben (?:niet aanwezig|afwezig|met vakantie)"
)
