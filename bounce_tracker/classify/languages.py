"""What bounce reports say in languages other than English, in one place.

The English tables live where they are used (:mod:`~bounce_tracker.classify.convention`
for hard and soft, :mod:`~bounce_tracker.classify.wording` for recognising a report,
:mod:`~bounce_tracker.classify.auto_reply` for auto-replies); each of them takes the
matching alternation from here, so a language is added in one module without touching
the English rules. Every value is a regular expression *fragment* (an alternation,
no flags, no anchors of its own) written in lower case: the convention matches
lower-cased, space-normalized text, and the other tables compile with
``re.IGNORECASE``. Each fragment must do bounded work per position (no nested
repetition: every repeat is bounded, ``(?:\\w+ ){0,2}`` at most).

Languages covered: German, French, Spanish, Portuguese, Italian, Dutch, Polish,
Czech, Latvian, Swedish, Danish, Norwegian, Finnish, Turkish, Greek, Russian,
Japanese, Chinese (simplified and traditional) and Korean throughout; for the hard
and full-mailbox phrases also Ukrainian, Bulgarian, Serbian/Croatian, Slovenian,
Slovak, Hungarian, Romanian, Lithuanian, Estonian, Indonesian, Vietnamese, Thai,
Arabic and Hebrew. Where a language writes
no spaces (Japanese, Chinese) a phrase is anchored on its noun, and the words for
*the sender* (差出人, 发件人…) are kept out by look-behinds, so that "the sender's
address does not exist" never reads as a dead recipient.

Text reaches these patterns decoded: MIME parts and encoded words in their declared
charset (ISO-2022-JP, Shift_JIS, EUC-JP, GB2312/GBK, Big5, KOI8-R, windows-1251,
UTF-7…), quoted-printable and base64 undone, full-width forms folded
(:mod:`~bounce_tracker.classify.mime`).
"""

# Greek, Cyrillic and Turkish letters that look like Latin ones are the point here.
# ruff: noqa: RUF001

from __future__ import annotations

import re

# What _split_top must see of a fragment: escapes and character classes (skipped
# whole), parentheses and bars. One scan in C instead of a loop over every character.
_STRUCTURE_RE = re.compile(r"\\.?|\[(?:\\.?|[^\]\\])*\]?|[()|]", re.DOTALL)


def _split_top(fragment: str) -> list[str]:
    """The top-level alternatives of a regular expression fragment."""
    parts: list[str] = []
    depth, start = 0, 0
    for token in _STRUCTURE_RE.finditer(fragment):
        char = token.group()
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(fragment[start : token.start()])
            start = token.end()
    parts.append(fragment[start:])
    return parts


def _group_end(fragment: str) -> int:
    """The index just past the group that opens ``fragment`` ("(?:…)")."""
    depth, index, in_class = 0, 0, False
    while index < len(fragment):
        char = fragment[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return len(fragment)


def _first_chars(fragment: str) -> set[str] | None:
    """The characters a match of ``fragment`` can start with, or None when unsure."""
    chars: set[str] = set()
    for alternative in _split_top(fragment):
        # Zero-width things in front don't consume: "\b", look-arounds.
        while alternative.startswith(("\\b", "(?=", "(?!", "(?<=", "(?<!")):
            skip = 2 if alternative.startswith("\\b") else _group_end(alternative)
            alternative = alternative[skip:]
        if alternative.startswith("(?:"):
            end = _group_end(alternative)
            if alternative[end : end + 1] in ("?", "*", "{"):
                return None
            inner = _first_chars(alternative[3 : end - 1])
            if inner is None:
                return None
            chars |= inner
        elif alternative.startswith("[") and "]" in alternative:
            members = alternative[1 : alternative.index("]")]
            if not members or any(char in members for char in "^-\\["):
                return None
            chars |= set(members)
        elif not alternative or alternative[0] in "([\\.^$|)?*+{":
            return None
        else:
            chars.add(alternative[0])
    return chars


def _guarded(fragment: str) -> str:
    """``fragment`` behind a look-ahead for the characters its matches start with.

    Python's engine tries every alternative at every position; one character class
    first turns most positions away at once (the fragments are long alternations,
    searched over whole reports). Unchanged when the first characters can't be told.
    """
    chars = _first_chars(fragment)
    if not chars:
        return fragment
    return "(?=[" + "".join(re.escape(char) for char in sorted(chars)) + "])(?:" + fragment + ")"


# Words for "the sender" before a CJK noun: "差出人のアドレスが存在しません" is about us.
# Used after a look-ahead for the noun's first character, so that the look-behinds
# run only where a noun starts.
_NOT_SENDER_CJK = (
    r"(?<!ip)(?<!ip )(?<!发件人)(?<!發件人)(?<!寄件人)(?<!寄件者)(?<!发信人)(?<!發信人)(?<!差出人)"
    r"(?<!送信者)(?<!送信元)(?<!差出人の)(?<!送信者の)(?<!送信元の)(?<!发件人的)"
)

#: The recipient's domain does not exist (hard, like an authoritative NXDOMAIN).
DOMAIN_NOT_FOUND = _guarded(
    r"домен\w{0,2} (?:\w+ ){0,2}не (?:найден|существует)|несуществующ\w{0,3} домен"
    r"|域名(?:不存在|无效|無效|未找到)|ドメイン(?:が|は)?(?:存在しません|見つかりません)"
    r"|도메인(?:이|을|은)? ?(?:존재하지 않|찾을 수 없)"
    r"|domain\w{0,2} (?:existiert nicht|nicht gefunden|ist unbekannt)|unbekannte domain"
    r"|domaine (?:\w+ ){0,2}(?:inexistant|introuvable|inconnu)|domaine n'existe pas"
    r"|dominio (?:inexistente|no existe|desconocido|non esiste|sconosciuto)"
    r"|dom[ií]nio (?:inexistente|n[aã]o existe)|domein (?:\w+ )?bestaat niet|onbekend domein"
    r"|domena (?:\w+ )?nie istnieje|doména (?:\w+ )?neexistuje|domēns (?:\w+ )?neeksistē"
    r"|domänen (?:\w+ )?finns (?:inte|ej)|domænet (?:\w+ )?findes ikke|domenet (?:\w+ )?finnes ikke"
    r"|verkkotunnusta (?:\w+ )?ei (?:ole olemassa|löydy)|alan ad[ıi] (?:bulunamad[ıi]|mevcut değil)"
    r"|τομέας (?:\w+ )?δεν υπ[άα]ρχει"
)

#: The recipient does not exist (the convention's hard tier): "user unknown" and
#: its kin, the account closed or disabled for good. The domain: :data:`DOMAIN_NOT_FOUND`.
DEAD_ADDRESS = _guarded(
    # German
    r"benutzer (?:ist )?unbekannt|unbekannter? (?:benutzer|empfänger|adresse|nutzer|mailbox)"
    r"|empfänger (?:ist )?unbekannt|(?:benutzer|empfänger|postfach|adresse|konto|mailbox|nutzer"
    r"|user"
    r"|account)\w{0,10} (?:\w+ ){0,2}existiert (?:nicht|nicht mehr)\b|kein(?:e"
    r"|en)? (?:solche[rns]? )?(?:benutzer"
    r"|empfänger|postfach|mailbox)\b|(?:empfänger|benutzer|postfach|e-mail-adresse|konto"
    r"|mailbox|nutzer)\w{0,10} (?:wurde )?(?:nicht gefunden|nicht vorhanden)"
    r"|(?:konto|postfach|e-mail-adresse|mailbox) (?:\w+ ){0,2}(?:gelöscht|aufgelöst|gekündigt)"
    # French
    r"|utilisateur (?:\w+ )?(?:inconnu|inexistant|introuvable)|destinataire (?:\w+ )?(?:inconnu"
    r"|invalide|inexistant|introuvable)|adresse (?:e-?mail |électronique |de messagerie )?"
    r"(?:invalide|inconnue|inexistante|introuvable)|(?:utilisateur|destinataire|adresse|compte"
    r"|boîte aux lettres|boite aux lettres|bal|mailbox)\w{0,3} (?:\w+ ){0,3}n['’]existe (?:pas"
    r"|plus)"
    r"|aucun (?:utilisateur|destinataire|compte|compte de messagerie) (?:ne correspond|de ce nom"
    r"|n'existe)|(?:compte|boîte aux lettres|adresse) (?:\w+ ){0,2}(?:supprimée?|clôturée?"
    r"|résiliée?|fermée?)\b"
    # Spanish
    r"|usuario (?:\w+ )?(?:desconocido|inexistente|no existe|no encontrado|no válido|inválido)"
    r"|(?:usuario|destinatario|direcci[oó]n|buz[oó]n|cuenta|correo)\w{0,3} (?:\w+ ){0,3}no existe"
    r"|destinatario (?:\w+ )?(?:desconocido|inexistente|no existe|no válido"
    r"|inválido)|direcci[oó]n (?:de correo (?:electr[oó]nico )?)?(?:inexistente|desconocida"
    r"|no existe|no válida|inválida)|buz[oó]n (?:\w+ )?(?:inexistente|no existe)"
    r"|cuenta (?:\w+ ){0,4}(?:eliminada|cerrada|cancelada|dada de baja|inexistente)"
    # Portuguese
    r"|usu[aá]rio (?:\w+ )?(?:desconhecido|inexistente|n[aã]o existe|n[aã]o encontrado)"
    r"|utilizador (?:\w+ )?(?:desconhecido|inexistente|n[aã]o existe|n[aã]o encontrado)"
    r"|(?:usu[aá]rio|utilizador|destinat[aá]rio|endere[çc]o|conta|caixa postal|e-?mail)\w{0,3}"
    r" (?:\w+ ){0,3}n[aã]o existe|conta (?:\w+ ){0,3}(?:inexistente|encerrada|cancelada|exclu[ií]da"
    r"|desativada)\b|endere[çc]o (?:de e-?mail |eletr[oô]nico |electr[oó]nico )?(?:inexistente"
    r"|inv[aá]lido|desconhecido|n[aã]o encontrado)|destinat[aá]rio (?:\w+ )?(?:inexistente"
    r"|desconhecido|inv[aá]lido|n[aã]o encontrado)|caixa postal (?:\w+ )?inexistente"
    # Italian
    r"|utente (?:\w+ )?(?:sconosciuto|inesistente|non (?:esiste|trovato|valido))"
    r"|(?:utente|destinatario|indirizzo|casella|account|mailbox)\w{0,3} (?:\w+ ){0,3}non esiste"
    r"|indirizzo (?:e-?mail |di posta (?:elettronica )?)?(?:inesistente|errato"
    r"|non valido|sconosciuto)|destinatario (?:\w+ )?(?:sconosciuto|inesistente|non valido"
    r"|non trovato)|casella (?:di posta |email |e-mail )?(?:inesistente|non trovata)"
    r"|(?:account|casella|utenza|indirizzo) (?:\w+ ){0,2}(?<!temporaneamente )(?:disattivat[oa]"
    r"|chius[oa]|cancellat[oa]|eliminat[oa])\b"
    # Dutch
    r"|onbekende (?:gebruiker|ontvanger|geadresseerde|mailbox|e-?mailadres)|(?:gebruiker|ontvanger"
    r"|adres|e-?mailadres|mailbox|postvak|account)\w{0,3} (?:\w+ ){0,3}bestaat niet|(?:gebruiker"
    r"|ontvanger|mailbox|postvak|e-?mailadres|adres) (?:\w+ )?"
    r"(?:is onbekend|niet gevonden)|(?:account|mailbox|e-?mailadres) (?:\w+ ){0,2}(?:is )?"
    r"(?:opgeheven|verwijderd)\b"
    # Polish
    r"|(?:użytkownik|odbiorca|adresat|adres|konto|skrzynka)\w{0,4} (?:\w+ ){0,3}nie istnieje"
    r"|nieznany (?:użytkownik|odbiorca|adres|adresat)|nieprawidłowy adres"
    r"(?: odbiorcy| e-mail)?|brak (?:takiego )?(?:użytkownika|odbiorcy|adresata|konta"
    r"|skrzynki)\b|(?:użytkownik|odbiorca|adres|konto|skrzynka)\w{0,4} (?:\w+ )?nie został[ao]?"
    r" znalezion|konto (?:\w+ ){0,2}(?:usunięte|zamknięte|zlikwidowane)"
    # Czech
    r"|(?:uživatel|adresát|příjemce|adresa|schránka|účet)\w{0,3} (?:\w+ ){0,3}neexistuje"
    r"|neznámý (?:uživatel|adresát|příjemce)|(?:uživatel|adresát|příjemce"
    r"|schránka) (?:\w+ )?nenalezen|účet (?:\w+ ){0,2}(?:zrušen|smazán)"
    # Latvian
    r"|(?:lietotājs|adresāts|saņēmējs|adrese|pastkaste|konts)\w{0,3} (?:\w+ ){0,3}neeksistē"
    r"|nezināms (?:lietotājs|adresāts|saņēmējs)|(?:lietotājs|adresāts|saņēmējs"
    r"|pastkaste) (?:\w+ )?nav atrast"
    # Swedish, Danish, Norwegian
    r"|okänd (?:mottagare|användare|adress)|(?:användaren|mottagaren|adressen|e-postadressen"
    r"|brevlådan|postlådan|kontot) (?:\w+ ){0,2}finns (?:inte|ej)|ukendt (?:modtager|bruger"
    r"|adresse)|ukjent (?:mottaker|bruker|adresse)|(?:brugeren|modtageren|adressen"
    r"|e-mailadressen|postkassen|kontoen|brukeren|mottakeren|e-postadressen) (?:\w+ ){0,2}"
    r"(?:findes|finnes) ikke|(?:kontot|kontoen) (?:\w+ ){0,2}(?:stängts|avslutats|lukket"
    r"|slettet|nedlagt|avsluttet)\b"
    # Finnish
    r"|tuntematon (?:vastaanottaja|käyttäjä|osoite)|(?:käyttäjää|vastaanottajaa|osoitetta"
    r"|postilaatikkoa|tiliä) (?:\w+ ){0,2}ei (?:ole olemassa|löydy|löytynyt)"
    r"|tili (?:on )?(?:suljettu|poistettu)"
    # Turkish (upper case I lower-cases to a dotted i)
    r"|(?:kullan[ıi]c[ıi]|al[ıi]c[ıi]|adres|hesap|posta kutusu)\w{0,6} (?:\w+ ){0,2}"
    r"(?:bulunamad[ıi]|mevcut de[ğg]il)|(?:geçersiz|gecersiz|bilinmeyen) (?:al[ıi]c[ıi]"
    r"|adres|kullan[ıi]c[ıi])|böyle bir (?:kullan[ıi]c[ıi]|adres|hesap) (?:yok|bulunmuyor)"
    # Greek
    r"|(?:χρ[ήη]στης|παραλ[ήη]πτης|λογαριασμ[όο]ς|διε[ύυ]θυνση|γραμματοκιβ[ώω]τιο) (?:\w+ ){0,2}"
    r"δεν (?:υπ[άα]ρχει|βρ[έε]θηκε)|[άα]γνωστ(?:ος|η) (?:χρ[ήη]στης|παραλ[ήη]πτης|διε[ύυ]θυνση)"
    # Russian
    r"|(?:пользовател|получател|адресат|адрес|ящик|аккаунт|учетн|учётн)\w{0,6} (?:\w+ ){0,3}"
    r"не существует|нет такого (?:пользовател|адресат|адреса|ящика|получател|аккаунт)"
    r"|несуществующ\w{0,4} (?:пользовател|адрес|ящик|получател|аккаунт)|(?:пользовател[ьяю]"
    r"|получател[ьяю]|адресат\w{0,2}"
    r"|адрес\w{0,2}|ящик\w{0,2}|аккаунт\w{0,2}|учетн\w{0,3} запис\w{0,2}|учётн\w{0,3} запис\w{0,2})"
    r" (?:\w+ ){0,2}не (?:найден\w{0,2}|зарегистрирован\w{0,2})|неизвестн\w{0,3} (?:пользовател"
    r"|получател|адрес)|(?:такого|такой) (?:почтового )?(?:пользователя|ящика|адреса|адресата"
    r"|получателя|аккаунта|учетной записи|учётной записи) (?:нет|не существует)"
    r"|(?:ящик|аккаунт|учетная запись|учётная запись|адрес) (?:\w+ ){0,2}(?:удал[её]н\w{0,2}"
    r"|закрыт\w{0,2})\b"
    # Japanese
    r"|宛先不明|ユーザ(?:ー)?不明|不明なユーザ|(?=[ユアあ宛受メ])"
    + _NOT_SENDER_CJK
    + r"(?:ユーザ(?:ー)?(?:名)?"
    r"|アカウント|宛先|あて先|受信者|受取人|メールアドレス|アドレス|メールボックス)(?:は|が)?"
    r"(?:存在しません|存在しない|見つかりません|見つからない|見つかりませんでした|不明です"
    r"|登録されていません|現在使われておりません|使われておりません)"
    r"|存在しない(?:ユーザ|アドレス|メールアドレス|宛先|アカウント)"
    r"|ディレクトリに(?:リストされていません|存在しません|ありません|登録されていません)"
    r"|(?:アカウント|メールアドレス)(?:は|が)?(?:削除|廃止|解約)されて"
    # The address itself as the subject ("addr" is the placeholder the convention
    # puts where an address was: "taro@example.jpは存在しません").
    r"|addr>?(?:は|が)?(?:存在しません|存在しない|見つかりません|不明です|登録されていません)"
    r"|addr>?(?:不存在|无效|無效)|addr>?(?:는|은|이|가)? ?존재하지 않"
    # Chinese
    r"|(?=[用收邮郵电地信帐账帳使])"
    + _NOT_SENDER_CJK
    + r"(?:用户|用戶|收件人|收件者|收信人|邮件地址"
    r"|郵件地址|电子邮件地址"
    r"|地址|邮箱|郵箱|信箱|帐号|账号|帳號|账户|帳戶|帐户|使用者)(?:名)?(?:不存在|无效|無效"
    r"|未找到|找不到|已注销|已註銷|已被注销|已被註銷)|无此用户|無此用戶|查无此人|查無此人"
    r"|没有这个用户|沒有這個用戶|不存在的(?:用户|邮箱|地址|帐号|账号)"
    # Ukrainian, Bulgarian, Serbian/Croatian/Bosnian, Slovenian, Slovak (Czech above),
    # Hungarian, Romanian, Lithuanian, Estonian, Indonesian/Malay, Vietnamese, Thai,
    # Arabic, Hebrew: the standard "user unknown / does not exist" of each.
    r"|(?:користувач|отримувач|адресат|адреса|скриньк)\w{0,4} (?:\w+ ){0,2}(?:не знайден"
    r"|не існує)|(?:потребител|получател|адрес)\w{0,4} (?:\w+ ){0,2}(?:не съществува"
    r"|не е намерен)|(?:korisnik|primatelj|primalac|adresa|pretinac|sandučić)\w{0,3} (?:\w+ ){0,2}"
    r"ne postoji|nepoznat\w{0,2} (?:korisnik|primatelj|primalac)|(?:uporabnik|prejemnik|naslov)"
    r"\w{0,3} (?:\w+ ){0,2}ne obstaja|(?:používateľ|príjemca|adresát|schránka)\w{0,3} (?:\w+ ){0,2}"
    r"neexistuje|neznámy (?:používateľ|príjemca)|ismeretlen (?:felhasználó|címzett)"
    r"|(?:felhasználó|címzett|postafiók|cím)\w{0,4} (?:\w+ ){0,2}nem (?:létezik|található)"
    r"|utilizator(?:ul)? (?:\w+ )?(?:necunoscut|inexistent|nu există)|(?:destinatar|adres[aă]"
    r"|căsuț[aă])\w{0,3} (?:\w+ ){0,2}(?:nu există|inexistent)|(?:vartotojas|gavėjas|adresas)"
    r" (?:\w+ ){0,2}(?:neegzistuoja|nerastas)|nežinomas (?:vartotojas|gavėjas)|tundmatu"
    r" (?:kasutaja|saaja)|(?:kasutajat|saajat|aadressi) (?:\w+ ){0,2}ei (?:eksisteeri|leitud)"
    r"|(?:pengguna|penerima|alamat|akun)\w{0,3} (?:\w+ ){0,2}tidak (?:dikenal|ditemukan|ada)"
    r"|(?:người dùng|người nhận|địa chỉ|tài khoản) (?:\w+ ){0,2}không tồn tại"
    r"|ไม่พบผู้ใช้|ไม่มีผู้ใช้|(?:المستخدم|المستلم|العنوان|صندوق البريد) (?:\w+ )?غير موجود"
    r"|(?:משתמש|נמען|כתובת|תיבת הדואר) (?:\w+ )?(?:לא קיים|לא קיימת|לא נמצא)"
    # Exchange's sentences for an address that wasn't found ("The email address you
    # entered couldn't be found"), as its localizations word them.
    r"|e-mail-adresse[^.;]{0,80}wurde nicht gefunden|adresse (?:de messagerie|e-?mail)[^.;]{0,80}"
    r"(?:est )?introuvable|no se (?:encontró|encontro|pudo encontrar|puede encontrar) la "
    r"dirección de correo|endere[çc]o de e-?mail[^.;]{0,60}n[aã]o foi encontrado"
    r"|impossibile trovare l'indirizzo (?:di posta|e-?mail)|e-?mailadres[^.;]{0,60}niet gevonden"
    r"|nie można odnaleźć (?:wprowadzonego )?adresu|не удалось найти (?:указанный )?(?:вами )?"
    r"адрес электронной почты|找不到(?:你|您)?(?:输入|輸入)?的?(?:电子邮件|電子郵件)地址"
    # Korean
    r"|(?<!ip )(?:사용자|수신자|받는 ?사람|계정|메일 ?주소|이메일 ?주소|주소|아이디|메일박스"
    r"|메일함)"
    r"(?:가|이|는|은|를|의)? ?(?:존재하지 않|없습니다|찾을 수 없)|존재하지 않는 (?:사용자|계정"
    r"|메일|주소|아이디|수신자)|없는 (?:사용자|계정|아이디|주소)"
    r"|" + DOMAIN_NOT_FOUND
)

#: "Does not exist" without saying what (the convention's generic tier: hard only
#: when the status doesn't name another cause), like the English "does not exist".
GENERIC_DEAD = _guarded(
    r"existiert nicht|n['’]existe (?:pas|plus)|\bno existe\b|non esiste|bestaat niet"
    r"|nie istnieje|neexistuje|neeksistē|n[aã]o existe|не существует|нет такого|несуществующ"
    r"|finns (?:inte|ej)|findes ikke|finnes ikke|ei ole olemassa|δεν υπ[άα]ρχει|存在しません"
    r"|存在しない|不存在|존재하지 않"
)

#: The mailbox exists but is full (soft).
MAILBOX_FULL = _guarded(
    r"postfach (?:\w+ ){0,3}voll\b|(?:postfach|mailbox|speicher)\w{0,8} (?:ist )?(?:voll"
    r"|überschritten|erschöpft)\b|speicherplatz (?:\w+ ){0,2}(?:überschritten|erschöpft"
    r"|nicht ausreichend)|boîte (?:\w+ ){0,3}(?:pleine|saturée)|boite (?:\w+ ){0,3}(?:pleine"
    r"|saturee)|\bpleine\b|espace (?:de stockage )?(?:insuffisant|saturé)"
    r"|casella (?:\w+ ){0,5}(?:piena|satura|esaurita)"
    r"|spazio (?:su disco |di archiviazione )?(?:esaurito|insufficiente)"
    r"|buz[oó]n (?:\w+ ){0,3}(?:lleno|completo|excedido)|cuota excedida"
    r"|caixa (?:\w+ ){0,4}(?:cheia|lotada)"
    r"|cota (?:\w+ )?excedida|espa[çc]o (?:\w+ )?insuficiente"
    r"|(?:mailbox|postvak|postbus|brievenbus|inbox) (?:\w+ ){0,4}(?:vol|overvol)\b"
    r"|onvoldoende (?:opslag|schijf)ruimte"
    r"|skrzynka (?:\w+ ){0,2}(?:pełna|przepełniona|zapełniona)|przekroczon\w{0,3} (?:limit"
    r"|pojemno)|brak (?:wolnego )?miejsca"
    r"|schránka (?:\w+ ){0,3}(?:plná|přeplněná)|plná schránka|překročen\w{0,2} kvót"
    r"|pastkaste (?:\w+ ){0,2}(?:pilna|pārpildīta)"
    r"|(?:brevlådan|postlådan|inkorgen|e-postlådan) (?:\w+ ){0,2}full\b|kvoten (?:är )?överskriden"
    r"|(?:postkassen|indbakken|innboksen|postboksen) (?:\w+ ){0,2}(?:fuld|full)\b"
    r"|(?:postilaatikko|sähköpostilaatikko) (?:\w+ ){0,2}täynnä|kiintiö (?:on )?(?:ylittynyt|täynnä"
    r"|ylitetty)"
    r"|posta kutusu (?:\w+ ){0,2}dolu|kota (?:aş[ıi]ld[ıi]|asildi)"
    r"|(?:γραμματοκιβ[ώω]τιο|θυρ[ίι]δα) (?:\w+ ){0,3}(?:γεμ[άα]τ[οη]|πλ[ήη]ρες)"
    r"|(?:ящик|почта)\w{0,3} (?:\w+ ){0,2}(?:переполнен|заполнен|полон)|переполнен"
    r"|превышен\w{0,2} (?:квот|лимит|размер|объ[её]м)|квота (?:\w+ ){0,2}превышен"
    r"|недостаточно места"
    r"|容量(?:が|を)?(?:超過|オーバー|不足|いっぱい|一杯)|(?:メールボックス|ボックス)(?:が|は)?"
    r"(?:いっぱい|一杯|満杯|フル)|(?:ディスク|記憶)(?:容量|領域)が不足"
    r"|(?:邮箱|郵箱|信箱|空间|空間|容量)(?:已满|已滿|满了|滿了|不足|超限)|(?:邮箱|郵箱|信箱)空间"
    r"(?:已满|不足)|超出(?:邮箱|郵箱|信箱)?(?:容量|空间|配额)|配额已满"
    r"|скринька (?:\w+ ){0,2}переповнен|пощенск\w{0,3} кутия (?:\w+ ){0,2}(?:е )?пълна"
    r"|(?:pretinac|sandučić) (?:\w+ ){0,2}(?:je )?pun\b|(?:nabiralnik"
    r"|predal) (?:\w+ ){0,2}(?:je )?poln"
    r"|postafiók (?:\w+ ){0,2}megtelt|căsuț[aă] (?:poștală "
    r"|postala )?(?:\w+ ){0,2}(?:este )?plin[aă]"
    r"|pašto dėžutė (?:\w+ ){0,2}pilna|postkast (?:\w+ ){0,2}(?:on )?täis"
    r"|kotak surat (?:\w+ ){0,2}penuh"
    r"|hộp thư (?:\w+ ){0,2}(?:đã )?đầy|กล่องจดหมายเต็ม|صندوق البريد (?:\w+ )?ممتلئ"
    r"|תיבת הדואר (?:\w+ )?מלאה"
    r"|(?:메일함|편지함|메일박스|사서함)(?:이|의)? ?(?:용량|가득|꽉)|용량(?:이|을)? ?(?:초과|부족"
    r"|가득)"
)

#: The account is suspended, blocked, locked or disabled for now (soft: it may come
#: back). Checked before :data:`DEAD_ADDRESS` (the convention's mailbox-state tier).
SUSPENDED = _guarded(
    r"(?:konto|postfach|benutzer|account|mailbox)\w{0,10} (?:\w+ ){0,3}(?:gesperrt|vorübergehend"
    r" deaktiviert|stillgelegt)|vorübergehend (?:gesperrt|deaktiviert|nicht verfügbar)"
    r"|(?:compte|boîte|boite|adresse) (?:\w+ ){0,3}(?:suspendue?|bloquée?|temporairement"
    r" désactivée?)|temporairement (?:désactivée?|suspendue?|bloquée?)"
    r"|(?:cuenta|buz[oó]n) (?:\w+ ){0,3}(?:suspendid[oa]|bloquead[oa]|inactiv[oa])"
    r"|temporalmente (?:desactivad|suspendid|bloquead)"
    r"|(?:conta|caixa) (?:\w+ ){0,3}(?:suspens[ao]|bloquead[oa]|inativ[oa])"
    r"|temporariamente (?:desativad|suspens|bloquead)"
    r"|(?:account|casella|utente|utenza) (?:\w+ ){0,3}(?:sospes[oa]|bloccat[oa])"
    r"|temporaneamente (?:disattivat|sospes|bloccat)"
    r"|(?:account|mailbox) (?:\w+ ){0,2}(?:geblokkeerd|opgeschort|tijdelijk)"
    r"|(?:konto|skrzynka)\w{0,3} (?:\w+ ){0,2}(?:zablokowan|zawieszon)|tymczasowo zablokowan"
    r"|(?:účet|schránka) (?:\w+ ){0,2}(?:zablokován|pozastaven)|dočasně (?:zablokován|zrušen)"
    r"|(?:kontot|kontoen) (?:\w+ ){0,2}(?:spärrat|blokeret|sperret|avstängt)"
    r"|tili (?:on )?(?:suljettu väliaikaisesti|lukittu|jäädytetty)"
    r"|hesap (?:\w+ ){0,2}(?:askıya alındı|askiya alindi|engellendi|dondurul)"
    r"|λογαριασμ[όο]ς (?:\w+ ){0,2}(?:αναστ[άα]λ|κλειδ[ώω]θ)"
    r"|(?:ящик|аккаунт|учетн\w{0,3} запис\w{0,2}|учётн\w{0,3} запис\w{0,2}|пользовател\w{0,2})"
    r" (?:\w+ ){0,2}(?:заблокирован|заморожен|приостановлен|временно отключ)"
    r"|временно (?:заблокирован|отключ|недоступ)"
    r"|(?:アカウント|メールアドレス|ユーザ(?:ー)?)(?:は|が)?(?:一時)?(?:停止|凍結|ロック)"
    r"|利用停止|一時停止"
    r"|(?:帐号|账号|帳號|账户|帳戶|帐户|邮箱|郵箱|用户|用戶)(?:已)?(?:被)?(?:冻结|凍結|暂停|暫停|锁定"
    r"|鎖定|停用)"
    r"|휴면 ?(?:계정|상태)|(?:계정|메일함)(?:이|은)? ?(?:정지|잠금|잠겨|차단)"
)

#: Our sender address or domain named in other languages (the convention's
#: sender-side tier): "Адрес отправителя не существует" is about us. Not as a field
#: label ("发件人: …", "Отправитель: …" in a report's summary of the original).
SENDER_SIDE = _guarded(
    r"(?:отправител|发件人|發件人|寄件人|寄件者|发信人|發信人|差出人|送信者|送信元|발신자"
    r"|보낸 ?사람"
    r"|송신자|absender|expéditeur|remitente|remetente|mittente|afzender|nadawc|odesílatel"
    r"|sūtītāj|avsändar|afsender|avsender|lähettäj|gönderen|gonderen|αποστολ[έε])"
    r"\w{0,6}+(?! ?[:：])"
)

#: Policy refusals in other languages: spam, blocklists, refusals (soft).
POLICY = _guarded(
    r"спам|черн\w{0,3} спис|垃圾邮件|垃圾郵件|黑名单|黑名單|迷惑メール|スパム|ブラックリスト"
    r"|受信拒否|拒否されました|스팸|블랙리스트|수신 ?거부|lista negra|liste noire|schwarze liste"
    r"|czarn\w{0,3} list|zwarte lijst|svartlist|sortlist|kara liste|ανεπιθ[ύυ]μητ"
)

#: Temporary failures named in other languages ("try again later") (soft).
TEMPORARY = _guarded(
    r"временн\w{0,3} (?:ошибк|сбо|проблем|недоступ)|попробуйте (?:позже|ещё|еще)"
    r"|повторите попытку|一時的|しばらく(?:して|時間をおいて)|暂时|暫時|稍后再试|稍後再試"
    r"|일시적|vorübergehend|später erneut|temporairement|réessayer|ultérieurement"
    r"|temporalmente|más tarde|temporariamente|mais tarde|temporaneamente|più tardi"
    r"|tijdelijk|later opnieuw|tymczasow|spróbuj(?:ponownie)? później|dočasn|později"
    r"|īslaicīg|tillfällig|midlertidig|väliaikai|geçici olarak|gecici olarak|προσωριν"
)

#: "No longer": generic, decided by the status like its English form.
NO_LONGER = _guarded(
    r"\bnicht mehr\b|\bn'est plus\b|\bya no\b|\bnon (?:è|e) più\b|\bnão (?:é|está) mais\b"
    r"|\bniet meer\b|\bjuż nie\b|\bуже не\b|\bбольше не\b"
)

#: Subjects of bounce reports. A subject alone can make a report a bounce: each
#: phrase here is one that only mail software puts in a subject.
BOUNCE_SUBJECT = _guarded(
    r"unzustellbar|nicht zustellbar|nicht zugestellt|zustellung fehlgeschlagen|rückläufer"
    r"|non remis|n'a pas pu|échec de (?:la )?remise|echec de (?:la )?remise|non délivré"
    r"|non distribué|message retourné|erreur de distribution"
    r"|no se puede entregar|no entregado|mensaje devuelto|error de entrega|entrega fallida"
    r"|não (?:é possível )?entreg|nao entreg|falha na entrega|mensagem devolvida"
    r"|non recapitabile|mancato recapito|messaggio non (?:recapitato|consegnato)|consegna fallita"
    r"|onbestelbaar|niet bezorgd|bezorging mislukt|niet afgeleverd"
    r"|niedostarczon|niedoręczon|nie można dostarczyć|błąd (?:dostarczenia|doręczenia)"
    r"|nedoručiteln|nedoručen|vrácená zpráva|nelze doručit|nepiegādāt|nevarēja piegādāt"
    r"|ej levererbart|olevererbar|kunde inte levereras|ikke levere|kunne ikke leveres"
    r"|ikke leveret|ikke levert|toimitus epäonnistui|ei voitu toimittaa|toimittamaton"
    r"|teslim edilemedi|iletilemedi|αδυναμία παράδοσης|δεν παραδόθηκε|αποτυχία παράδοσης"
    r"|недоставл|не доставлен|ошибка доставки|возврат (?:письма|сообщения)|не удается доставить"
    r"|配信不能|配送不能|配信エラー|送信エラー|配送エラー|メールエラー通知|配信失敗|送信失敗|不達"
    r"|宛先不明|無法傳遞|无法投递|無法投遞|退信|投递失败|投遞失敗|发送失败|發送失敗|未送达|未送達"
    r"|邮件被退回|郵件被退回|메일 발송 실패|발송 ?실패|전송 ?실패|배달 ?실패|메일 반송|반송된 메일"
)

#: Sentences that make a report a bounce together with another sign.
WEAK_BOUNCE_MARKER = _guarded(
    r"konnte nicht zugestellt|konnte nicht (?:ausgeliefert|zugestellt) werden"
    r"|n'a pas pu être (?:remis|distribué|délivré)|impossible de (?:remettre|distribuer)"
    r"|no (?:se )?pud(?:o|e) (?:ser )?entregar|no (?:ha podido|se ha podido) (?:ser )?entrega"
    r"|non è stato possibile (?:recapitare|consegnare)|non (?:è stato|può essere) recapitat"
    r"|kon niet worden (?:bezorgd|afgeleverd)|kan niet worden bezorgd"
    r"|não pôde ser entregue|não foi possível entregar|não pode ser entregue"
    r"|nie (?:mogła|mógł|może|została|został|udało się) (?:zostać )?dostarcz"
    r"|nie można dostarczyć|nemohl[ao]? být doručen|nelze doručit|nebyla doručena"
    r"|nevarēja (?:tikt )?piegādāt|netika piegādāt|kunde inte levereras|gick inte att leverera"
    r"|kunne ikke (?:leveres|levere)|ble ikke levert|blev ikke leveret|ei voitu toimittaa"
    r"|teslim edilemedi|iletilemedi|δεν (?:ήταν δυνατή|μπόρεσε) .{0,20}παράδοση"
    r"|не (?:может быть|могло быть|было|удалось) (?:доставлен|отправлен)|не удалось доставить"
    r"|не был[ао]? доставлен|невозможно доставить"
    r"|(?:メール|メッセージ)(?:を|は|が)?(?:配信|送信|配送)(?:できません|出来ません|されません"
    r"|できませんでした)|送信できませんでした|配信できませんでした|宛先に(?:届きません|送信できません)"
    r"|(?:邮件|郵件|信件)(?:无法|無法|未能|不能)(?:投递|投遞|送达|送達|发送|發送)"
    r"|(?:메일|메시지)(?:이|을|를)? ?(?:전송|발송|배달)(?:되지 못|할 수 없|에 실패|하지 못)"
)

#: Sentences only mail software writes (a report on their own): Exchange's localized
#: non-delivery reports ("Diagnostic information for administrators", "Delivery has
#: failed to these recipients or groups") and their kin.
STRONG_BOUNCE_MARKER = _guarded(
    r"diagnoseinformationen für administratoren|informations de diagnostic pour les"
    r" administrateurs|información de diagnóstico para administradores|informações de"
    r" diagnóstico para administradores|informazioni di diagnostica per gli amministratori"
    r"|diagnostische gegevens voor beheerders|informacje diagnostyczne dla administratorów"
    r"|diagnostické informace pro správce|diagnostisk information för administratörer"
    r"|диагностические сведения для администраторов|管理者向けの診断情報|管理员的诊断信息"
    r"|系統管理員的診斷資訊|관리자를 위한 진단 정보"
    r"|не удалось выполнить доставку следующим получателям"
    r"|次の受信者またはグループへの配信に失敗しました"
    r"|die zustellung an folgende empfänger oder gruppen ist fehlgeschlagen"
    r"|la remise à ces destinataires ou groupes a échoué|échec de la remise à ces destinataires"
    r"|error en la entrega a estos destinatarios o grupos"
)

#: Where an inline copy of the original message starts in a localized report (its
#: words must not decide): "Original message headers" and the like.
ORIGINAL_START = _guarded(
    r"ursprüngliche nachrichtenkopfzeilen|en-têtes de message d'origine|encabezados originales"
    r" del mensaje|cabeçalhos originais da mensagem|intestazioni originali del messaggio"
    r"|oorspronkelijke berichtkoppen|oryginalne nagłówki wiadomości|исходные заголовки сообщения"
    r"|元のメッセージ ?ヘッダー|原始邮件头|原始郵件標頭|원본 메시지 헤더|----- 元のメッセージ"
    r"|----- 原始邮件|----- исходное сообщение|----- ursprüngliche nachricht"
    r"|----- message d'origine|----- mensaje original"
)

#: A delay: delivery is still being tried.
DELAY = _guarded(
    r"zustellung verzögert|noch nicht zugestellt|remise différée|pas encore été (?:remis"
    r"|distribué)|entrega (?:retrasada|demorada)|todavía no se ha entregado"
    r"|ainda não foi entregue|consegna ritardata|non è ancora stato (?:recapitato|consegnato)"
    r"|bezorging vertraagd|nog niet (?:bezorgd|afgeleverd)|jeszcze nie (?:została )?dostarczon"
    r"|doručení (?:je )?zpožděn|leveransen (?:är )?försenad|leveringen (?:er )?forsinket"
    r"|toimitus (?:on )?viivästy|доставка (?:\w+ )?задерживается|задержка доставки"
    r"|(?:配信|送信)(?:が)?遅延|遅延通知|投递延迟|延迟投递|投遞延遲|延遲投遞"
    r"|(?:전송|발송|배달) 지연"
)

#: Subjects of auto-replies (out of office, vacation, automatic answer).
AUTO_REPLY_SUBJECT = _guarded(
    r"abwesenheit|réponse automatique|respuesta autom[aá]tica|risposta automatica"
    r"|automatisch antwoord|resposta autom[aá]tica|automaattinen vastaus"
    r"|automatyczna odpowied|автоответ|автоматический ответ|自動返信|自动回复|自動回覆"
    r"|fuera de la oficina|absence du bureau|automatisk (?:svar|besked|beskjed)|frånvaro"
    r"|fravær|poza biurem|automatická odpověď|mimo kancelář|automātiskā atbilde"
    r"|otomatik (?:yanıt|yanit|cevap)|ofis dışı|αυτόματη απάντηση|εκτός γραφείου"
    r"|не в офисе|нахожусь в отпуске|不在(?:通知|のお知らせ|連絡|のご連絡)|自動応答|自動回復"
    r"|不在办公室|不在辦公室|부재 ?중|자동 ?응답|자동 ?회신"
)

#: Opening sentences of auto-replies that carry no RFC 3834 header.
AUTO_REPLY_BODY = _guarded(
    r"\bich bin (?:bis|vom|ab|derzeit|zurzeit|momentan|nicht|im urlaub)\b|\bnicht im büro"
    r"|\bje suis (?:actuellement )?(?:absente?|en congés?)\b|\bestoy fuera de la oficina"
    r"|\bme encuentro fuera|\bestoy de vacaciones|\bsono (?:fuori ufficio|assente|in ferie)"
    r"|\bik ben (?:niet aanwezig|afwezig|met vakantie|op vakantie)"
    r"|\bestou (?:de férias|fora do escritório|ausente)|\bestarei (?:ausente|fora)"
    r"|\bjag är (?:tjänstledig|på semester|ledig|borta|frånvarande)"
    r"|\bjeg er (?:på ferie|fraværende|ikke på kontoret|bortrejst)|\bolen (?:lomalla|poissa)"
    r"|\bjestem (?:na urlopie|poza biurem|nieobecn)|\bjsem (?:na dovolené|mimo kancelář)"
    r"|\besmu atvaļinājumā|\bizindeyim|\bofis dışındayım|\bείμαι εκτός"
    r"|\bя (?:нахожусь |буду )?(?:в отпуске|вне офиса)|\bменя не будет"
    r"|不在にしております|不在にしています|休暇を(?:いただいて|取得して)"
    r"|我(?:正在|目前)?休假|我(?:目前)?不在办公室|부재중입니다|휴가 중입니다"
)
