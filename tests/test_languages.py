"""Bounces in other languages and charsets: hard or soft by issue 17's convention.

Per language, the hard cases (user unknown, no such domain, account closed) and the
soft counter-examples in the same language (mailbox full, suspended, spam, the
sender's own address), through :func:`classify_reply` (an SMTP reply at send time)
and :func:`classify_message` (a small text bounce in the language's usual charset);
then the decoding of each charset before the words are matched
(:mod:`bounce_tracker.classify.mime`), and the hygiene of the fragments in
:mod:`bounce_tracker.classify.languages`.
"""

# Cyrillic, Greek, Turkish and full-width letters that look like Latin ones are the point.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import re
import time
from email import message_from_bytes

import pytest

from bounce_tracker.classify import classify_message, classify_reply, languages
from bounce_tracker.classify.mime import decode_header_value, part_text
from bounce_tracker.core.kinds import BounceKind

HARD, SOFT = BounceKind.HARD, BounceKind.SOFT

# (language, SMTP reply, expected kind). Replies carry no English words that decide.
REPLIES = [
    ("de", "550 Benutzer unbekannt", HARD),
    ("de", "550 Der Empfänger wurde nicht gefunden", HARD),
    ("de", "550 Kein solches Postfach", HARD),
    ("de", "550 Das Konto wurde gelöscht", HARD),
    ("de", "552 Das Postfach des Empfängers ist voll", SOFT),
    ("de", "550 Konto vorübergehend deaktiviert", SOFT),
    ("de", "550 Absender existiert nicht", SOFT),
    ("fr", "550 Utilisateur inconnu", HARD),
    ("fr", "550 Adresse inexistante", HARD),
    ("fr", "550 Domaine inexistant", HARD),
    ("fr", "550 Ce compte a été supprimé", HARD),
    ("fr", "552 Boîte aux lettres pleine", SOFT),
    ("fr", "550 Compte temporairement suspendu", SOFT),
    ("fr", "550 Adresse de l'expéditeur invalide", SOFT),
    ("es", "550 Usuario desconocido", HARD),
    ("es", "550 La dirección no existe", HARD),
    ("es", "550 Cuenta dada de baja", HARD),
    ("es", "552 El buzón del destinatario está lleno", SOFT),
    ("es", "550 Cuenta suspendida", SOFT),
    ("pt", "550 Usuário inexistente", HARD),
    ("pt", "550 Utilizador desconhecido", HARD),
    ("pt", "550 Conta encerrada", HARD),
    ("pt", "552 A caixa postal do destinatário está cheia", SOFT),
    ("pt", "550 Conta temporariamente bloqueada", SOFT),
    ("pt", "550 Endereço do remetente inválido", SOFT),
    ("it", "550 Utente inesistente", HARD),
    ("it", "550 Indirizzo non valido", HARD),
    ("it", "550 Account disattivato", HARD),
    ("it", "552 La casella di posta del destinatario è piena", SOFT),
    ("it", "550 Account temporaneamente disattivato", SOFT),
    ("it", "550 Dominio del mittente inesistente", SOFT),
    ("nl", "550 Onbekende gebruiker", HARD),
    ("nl", "550 Dit e-mailadres bestaat niet", HARD),
    ("nl", "552 De mailbox van de ontvanger is vol", SOFT),
    ("nl", "550 Afzender bestaat niet", SOFT),
    ("pl", "550 Użytkownik nie istnieje", HARD),
    ("pl", "550 Nieznany odbiorca", HARD),
    ("pl", "552 Skrzynka odbiorcy jest przepełniona", SOFT),
    ("pl", "550 Konto odbiorcy zostało zablokowane", SOFT),
    ("pl", "550 Adres nadawcy nie istnieje", SOFT),
    ("cs", "550 Uživatel neexistuje", HARD),
    ("cs", "550 Neznámý příjemce", HARD),
    ("cs", "552 Schránka příjemce je plná", SOFT),
    ("lv", "550 Lietotājs nav atrasts", HARD),
    ("lv", "550 Adresāts neeksistē", HARD),
    ("lv", "552 Pastkaste ir pilna", SOFT),
    ("sv", "550 Okänd mottagare", HARD),
    ("sv", "550 Användaren finns inte", HARD),
    ("sv", "552 Brevlådan är full", SOFT),
    ("da", "550 Ukendt modtager", HARD),
    ("da", "550 Brugeren findes ikke", HARD),
    ("da", "552 Postkassen er fuld", SOFT),
    ("no", "550 Ukjent mottaker", HARD),
    ("no", "552 Postkassen er full", SOFT),
    ("fi", "550 Tuntematon vastaanottaja", HARD),
    ("fi", "550 Käyttäjää ei ole olemassa", HARD),
    ("fi", "552 Postilaatikko on täynnä", SOFT),
    ("tr", "550 Kullanıcı bulunamadı", HARD),
    ("tr", "550 KULLANICI BULUNAMADI", HARD),
    ("tr", "552 Alıcının posta kutusu dolu", SOFT),
    ("el", "550 Ο χρήστης δεν υπάρχει", HARD),
    ("el", "550 Ο ΧΡΗΣΤΗΣ ΔΕΝ ΥΠΑΡΧΕΙ", HARD),
    ("el", "552 Το γραμματοκιβώτιο είναι γεμάτο", SOFT),
    ("ru", "550 Пользователь не найден", HARD),
    ("ru", "550 Такого пользователя нет", HARD),
    ("ru", "550 Почтовый ящик удалён", HARD),
    ("ru", "550 Домен не существует", HARD),
    ("ru", "552 Почтовый ящик получателя переполнен", SOFT),
    ("ru", "550 Почтовый ящик заблокирован", SOFT),
    ("ru", "550 Домен отправителя не существует", SOFT),
    ("ru", "550 Сообщение отклонено как спам", SOFT),
    ("ja", "550 宛先のメールアドレスは存在しません", HARD),
    ("ja", "550 ユーザ不明", HARD),
    ("ja", "550 ドメインが存在しません", HARD),
    ("ja", "550 メールボックスの容量超過", SOFT),
    ("ja", "550 受信拒否設定により配信できません", SOFT),
    ("ja", "550 差出人のメールアドレスが存在しません", SOFT),
    ("ja", "550 迷惑メールと判定されました", SOFT),
    ("zh", "550 收件人地址不存在", HARD),
    ("zh", "550 用户不存在", HARD),
    ("zh", "550 收件者不存在", HARD),
    ("zh", "552 收件人邮箱空间已满", SOFT),
    ("zh", "550 收件人帐号已被冻结", SOFT),
    ("zh", "550 发件人地址无效", SOFT),
    ("zh", "554 邮件被判定为垃圾邮件", SOFT),
    ("ko", "550 받는 사람의 메일 주소가 존재하지 않습니다", HARD),
    ("ko", "550 존재하지 않는 계정입니다", HARD),
    ("ko", "552 받는 사람의 메일함 용량이 초과되었습니다", SOFT),
    ("ko", "550 휴면 계정입니다", SOFT),
    # Exchange's "the email address you entered couldn't be found", localized.
    ("de", "Die E-Mail-Adresse, an die Sie schreiben wollten, wurde nicht gefunden.", HARD),
    ("fr", "L'adresse de messagerie que vous avez entrée est introuvable.", HARD),
    ("es", "No se encontró la dirección de correo electrónico que escribió.", HARD),
    ("pt", "O endereço de email que você inseriu não foi encontrado.", HARD),
    ("it", "Impossibile trovare l'indirizzo di posta elettronica immesso.", HARD),
    ("nl", "Het e-mailadres dat u hebt opgegeven, is niet gevonden.", HARD),
    ("pl", "Nie można odnaleźć wprowadzonego adresu e-mail.", HARD),
    ("ru", "Не удалось найти указанный вами адрес электронной почты.", HARD),
    ("zh", "找不到你输入的电子邮件地址。", HARD),
    ("ja", "入力した電子メール アドレスが見つかりませんでした。", HARD),
    # More languages, the standard phrasing of each.
    ("uk", "550 Користувача не знайдено", HARD),
    ("uk", "552 Поштова скринька переповнена", SOFT),
    ("bg", "550 Потребителят не съществува", HARD),
    ("hr", "550 Korisnik ne postoji", HARD),
    ("hr", "552 Sandučić je pun", SOFT),
    ("sl", "550 Uporabnik ne obstaja", HARD),
    ("sk", "550 Používateľ neexistuje", HARD),
    ("hu", "550 Ismeretlen felhasználó", HARD),
    ("hu", "550 A címzett nem létezik", HARD),
    ("hu", "552 A postafiók megtelt", SOFT),
    ("ro", "550 Utilizator necunoscut", HARD),
    ("ro", "552 Căsuța poștală este plină", SOFT),
    ("lt", "550 Vartotojas neegzistuoja", HARD),
    ("et", "550 Tundmatu kasutaja", HARD),
    ("et", "552 Postkast on täis", SOFT),
    ("id", "550 Pengguna tidak dikenal", HARD),
    ("id", "552 Kotak surat penuh", SOFT),
    ("vi", "550 Người dùng không tồn tại", HARD),
    ("vi", "552 Hộp thư đã đầy", SOFT),
    ("th", "550 ไม่พบผู้ใช้", HARD),
    ("th", "552 กล่องจดหมายเต็ม", SOFT),
    ("ar", "550 المستخدم غير موجود", HARD),
    ("ar", "552 صندوق البريد ممتلئ", SOFT),
    ("he", "550 משתמש לא קיים", HARD),
    ("he", "552 תיבת הדואר מלאה", SOFT),
    # An IP address "not found" or "invalid" is not the recipient's.
    ("ja", "550 IPアドレスが見つかりません", SOFT),
    ("zh", "550 您的IP地址无效", SOFT),
    ("ru", "550 такой возможности нет", SOFT),
]


@pytest.mark.parametrize(("language", "reply", "kind"), REPLIES)
def test_reply_in_each_language(language, reply, kind):
    result = classify_reply(reply)
    assert result.kind == kind, (language, reply, result.reason)


@pytest.mark.parametrize(
    "reply",
    [
        "451 4.2.1 Пользователь не найден, попробуйте позже",
        "450 ユーザ不明",
        "421 Benutzer unbekannt",
        "450 收件人地址不存在",
    ],
)
def test_a_temporary_reply_is_never_hard_in_any_language(reply):
    assert classify_reply(reply).kind == SOFT


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("550 5.7.1 Le certificat n'existe pas", SOFT),
        ("550 5.7.1 Das Zertifikat existiert nicht", SOFT),
        ("550 5.7.1 Сертификат не существует", SOFT),
        ("550 5.7.1 証明書が存在しません", SOFT),
        ("550 N'existe pas", HARD),
        ("550 5.1.1 Existiert nicht", HARD),
        ("550 不存在", HARD),
    ],
)
def test_does_not_exist_without_saying_what_is_decided_by_the_status(reply, kind):
    # Like its English form: a 5.7.x status names another cause.
    assert classify_reply(reply).kind == kind, classify_reply(reply).reason


def test_a_field_label_naming_the_sender_is_not_sender_side_wording():
    assert classify_reply("550 Отправитель: a@example.com Пользователь не найден").kind == HARD
    assert classify_reply("550 收件人地址不存在 (发件人：a@example.com)").kind == HARD


# --- whole messages in each charset --------------------------------------------------


def _word(text: str, charset: str, codec: str | None = None) -> str:
    data = text.encode(codec or charset)
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


def _bounce(
    subject: str,
    body: str,
    charset: str | None,
    codec: str,
    cte: str = "8bit",
    sender: str = "MAILER-DAEMON@mx.example.net",
) -> bytes:
    payload = body.replace("\n", "\r\n").encode(codec)
    if cte == "base64":
        payload = base64.encodebytes(payload)
    content_type = "text/plain" + (f"; charset={charset}" if charset else "")
    return (
        f"Return-Path: <>\r\nFrom: {sender}\r\nTo: bounces+t1@bounces.example.com\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode() + payload


MESSAGES = [
    # language, subject, body (names rcpt@example.org), charset label, codec, cte, kind
    ("ja", "配信エラー", "宛先: rcpt@example.org\nユーザ不明", None, "iso2022_jp", "7bit", HARD),
    (
        "ja",
        "配信エラー",
        "宛先: rcpt@example.org\nユーザ不明",
        "iso-2022-jp",
        "cp932",
        "8bit",
        HARD,
    ),
    ("ja", "配信エラー", "宛先: rcpt@example.org\n容量超過", "euc-jp", "euc_jp", "base64", SOFT),
    ("ja", "ﾒｰﾙ配信ｴﾗｰ", "宛先: rcpt@example.org\nﾕｰｻﾞ不明", "x-sjis", "cp932", "8bit", HARD),
    (
        "zh",
        "系统退信",
        "收件人 rcpt@example.org\n收件人不存在 (喆)",
        "gb2312",
        "gbk",
        "base64",
        HARD,
    ),
    ("zh", "退信", "收件人 rcpt@example.org\n邮箱空间已满", "gbk", "gbk", "8bit", SOFT),
    ("zh", "無法傳遞", "收件者 rcpt@example.org\n收件者不存在", "big5", "cp950", "base64", HARD),
    (
        "ko",
        "메일 발송 실패",
        "rcpt@example.org\n존재하지 않는 계정",
        "ks_c_5601-1987",
        "cp949",
        "8bit",
        HARD,
    ),
    (
        "ru",
        "Недоставленное",
        "rcpt@example.org\nПользователь не найден",
        "koi8-r",
        "koi8_r",
        "8bit",
        HARD,
    ),
    (
        "ru",
        "Недоставленное",
        "rcpt@example.org\nЯщик переполнен",
        "windows-1251",
        "cp1251",
        "8bit",
        SOFT,
    ),
    ("de", "Unzustellbar", "rcpt@example.org\nBenutzer unbekannt", "utf-7", "utf-7", "7bit", HARD),
    (
        "pl",
        "Niedostarczona",
        "rcpt@example.org\nUżytkownik nie istnieje",
        "iso-8859-2",
        "iso8859_2",
        "8bit",
        HARD,
    ),
    (
        "el",
        "Αδυναμία παράδοσης",
        "rcpt@example.org\nΟ χρήστης δεν υπάρχει",
        "iso-8859-7",
        "iso8859_7",
        "8bit",
        HARD,
    ),
    (
        "tr",
        "Teslim edilemedi",
        "rcpt@example.org\nKullanıcı bulunamadı",
        "iso-8859-9",
        "iso8859_9",
        "8bit",
        HARD,
    ),
]


@pytest.mark.parametrize(
    ("language", "subject", "body", "charset", "codec", "cte", "kind"), MESSAGES
)
def test_text_bounce_in_each_charset(language, subject, body, charset, codec, cte, kind):
    label = charset or "utf-8"
    word_codec = {"x-sjis": "cp932", "ks_c_5601-1987": "cp949", "gb2312": "gbk", "big5": "cp950"}
    encoded = _word(subject, label, word_codec.get(label, codec if charset else "utf-8"))
    result = classify_message(_bounce(encoded, body, charset, codec, cte))
    assert result.kind == kind, (language, charset, result.reason, result.diagnostic)
    assert "rcpt@example.org" in [r.address for r in result.recipients]


def test_out_of_office_in_other_languages():
    for subject, body, codec in [
        ("不在のお知らせ", "12月8日まで不在にしております。", "iso-2022-jp"),
        ("自动回复: 会议", "我正在休假。", "gb2312"),
        ("Автоответ", "Я в отпуске до 15 декабря.", "koi8-r"),
        ("Automaattinen vastaus", "Olen lomalla.", "iso-8859-1"),
        ("Poza biurem", "Jestem na urlopie.", "iso-8859-2"),
    ]:
        codec_name = {"iso-2022-jp": "iso2022_jp", "gb2312": "gbk"}.get(codec, codec)
        message = _bounce(
            _word(subject, codec, codec_name), body, codec, codec_name, sender="a@example.org"
        )
        result = classify_message(
            message.replace(b"Return-Path: <>", b"Return-Path: <a@example.org>")
        )
        assert result.kind == BounceKind.AUTO_REPLY, (subject, result.reason)


# --- decoding ------------------------------------------------------------------------


def _part(content_type: str, body: bytes, cte: str = "8bit") -> str:
    message = message_from_bytes(
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + body
    )
    return part_text(message)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", "宛先不明です".encode("iso2022_jp"), "宛先不明です"),
        ("text/plain; charset=us-ascii", "宛先不明".encode("iso2022_jp"), "宛先不明"),
        ("text/plain; charset=iso-2022-jp", "宛先不明".encode("cp932"), "宛先不明"),
        ("text/plain; charset=iso-2022-jp", "宛先不明".encode("euc_jp"), "宛先不明"),
        ("text/plain; charset=shift_jis", "①㈱髙".encode("cp932"), "①㈱髙"),
        ("text/plain; charset=x-sjis", "ユーザ".encode("cp932"), "ユーザ"),
        ("text/plain; charset=windows-31j", "ユーザ".encode("cp932"), "ユーザ"),
        ("text/plain; charset=x-euc-jp", "ユーザ".encode("euc_jp"), "ユーザ"),
        ("text/plain; charset=gb2312", "用户不存在喆".encode("gbk"), "用户不存在喆"),
        ("text/plain; charset=x-gbk", "用户".encode("gbk"), "用户"),
        ("text/plain; charset=big5", "收件者€".encode("cp950"), "收件者€"),
        ("text/plain; charset=ks_c_5601-1987", "계정 똠".encode("cp949"), "계정 똠"),
        ("text/plain; charset=euc-kr", "계정 똠".encode("cp949"), "계정 똠"),
        ("text/plain; charset=koi8-r", "Пользователь".encode("koi8_r"), "Пользователь"),
        ("text/plain; charset=windows-1251", "Пользователь".encode("cp1251"), "Пользователь"),
        ("text/plain; charset=x-cp1251", "Ящик".encode("cp1251"), "Ящик"),
        ("text/plain; charset=utf-7", "Benutzer unbekannt: Ящик".encode("utf-7"), "Ящик"),
        ("text/plain; charset=iso-8859-1", "l’adresse".encode("cp1252"), "l’adresse"),
        ("text/plain; charset=utf-8", "ＵＳＥＲ　ＵＮＫＮＯＷＮ ｶﾞ".encode(), "USER"),
    ],
)
def test_part_text_decodes_each_charset(content_type, body, expected):
    assert expected in _part(content_type, body)


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("宛先のメールアドレスは存在しません。ユーザ不明", "cp932"),
        ("宛先のメールアドレスは存在しません。", "euc_jp"),
        ("받는 사람의 메일 주소가 존재하지 않습니다", "cp949"),
        ("原因：收件人地址不存在 (zhang@qq.example)", "gbk"),
        ("Пользователь не найден, почтовый ящик", "cp1251"),
        ("Пользователь не найден, почтовый ящик", "koi8_r"),
        ("Der Empfänger ist unbekannt. Grüße aus München", "cp1252"),
        ("Boîte aux lettres pleine, adresse erronée", "latin-1"),
    ],
)
def test_undeclared_8bit_text_is_read_in_the_charset_its_bytes_show(text, codec):
    assert _part("text/plain", text.encode(codec)) == text.replace("：", ":")
    raw_subject = text.encode(codec).decode("ascii", "surrogateescape")
    assert decode_header_value(raw_subject) == text.replace("：", ":")


@pytest.mark.parametrize(
    ("label", "codec", "text"),
    [
        ("cp50220", "iso2022_jp", "宛先不明"),
        ("x-iso-2022-jp", "iso2022_jp", "宛先不明"),
        ("euc-jp-ms", "euc_jp", "宛先不明"),
        ("sjis-win", "cp932", "宛先不明"),
        ("windows-936", "gbk", "用户不存在"),
        ("x-big5", "cp950", "收件者不存在"),
        ("x-mac-cyrillic", "mac_cyrillic", "Пользователь"),
        ("x-cp1250", "cp1250", "Użytkownik"),
        ("cp-1251", "cp1251", "Пользователь"),
        ("unicode-1-1-utf-8", "utf-8", "Пользователь"),
    ],
)
def test_charset_names_python_does_not_know(label, codec, text):
    assert _part(f"text/plain; charset={label}", text.encode(codec)) == text


def test_an_html_part_names_its_charset_in_a_meta_tag():
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'
        "</head><body><p>Пользователь не найден</p></body></html>"
    )
    assert "Пользователь не найден" in _part("text/html", html.encode("koi8_r"))
    html5 = '<meta charset="Shift_JIS"><p>ユーザ不明</p>'
    assert "ユーザ不明" in _part("text/html", html5.encode("cp932"))


def test_iso_2022_jp_nec_row_13_and_half_width_katakana():
    # ① in JIS row 13 (NEC special characters, as Windows writes them), then ESC ( I kana.
    body = b"\x1b$B-!\x1b(B \x1b(I6^\x1b(B"
    text = _part("text/plain; charset=iso-2022-jp", body)
    assert "①" in text
    assert "ガ" in text  # half-width ｶﾞ folded to the full-width letter


def test_quoted_printable_and_base64_bodies_are_undone():
    qp = _part("text/plain; charset=iso-8859-2", b"U=BFytkownik nie istnieje", "quoted-printable")
    assert "Użytkownik" in qp
    b64 = _part(
        "text/plain; charset=koi8-r",
        base64.encodebytes("Пользователь не найден".encode("koi8_r")),
        "base64",
    )
    assert "Пользователь не найден" in b64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (_word("メールエラー通知", "ISO-2022-JP", "iso2022_jp"), "メールエラー通知"),
        (_word("配信エラー", "Shift_JIS", "cp932"), "配信エラー"),
        (_word("配信エラー", "EUC-JP", "euc_jp"), "配信エラー"),
        (_word("Недоставленное сообщение", "koi8-r", "koi8_r"), "Недоставленное сообщение"),
        (_word("Письмо не доставлено", "windows-1251", "cp1251"), "Письмо не доставлено"),
        (_word("系统退信", "gb2312", "gbk"), "系统退信"),
        (_word("無法傳遞", "big5", "cp950"), "無法傳遞"),
        (_word("메일 발송 실패", "ks_c_5601-1987", "cp949"), "메일 발송 실패"),
        (_word("Unzustellbar: Ящик", "utf-7", "utf-7"), "Unzustellbar: Ящик"),
        # Shift_JIS labelled ISO-2022-JP in a subject.
        (_word("配信エラー", "ISO-2022-JP", "cp932"), "配信エラー"),
        # Raw (unencoded) ISO-2022-JP in a header, as old Japanese mailers wrote.
        ("\x1b$B08@hITL@\x1b(B", "宛先不明"),
    ],
)
def test_encoded_subjects_in_each_charset(value, expected):
    assert decode_header_value(value) == expected


def test_adjacent_encoded_words_are_joined_before_decoding():
    data = "宛先不明".encode()
    first, second = base64.b64encode(data[:4]).decode(), base64.b64encode(data[4:]).decode()
    value = f"=?UTF-8?B?{first}?= =?UTF-8?B?{second}?="
    assert decode_header_value(value) == "宛先不明"
    assert decode_header_value("=?utf-8?b?QUI=?= =?iso-8859-1?q?=E9?=") == "ABé"


def test_padded_base64_words_keep_their_last_bytes():
    assert decode_header_value("=?utf-8?b?QQ==?=") == "A"
    assert decode_header_value(_word("系统退信", "gb2312", "gbk")) == "系统退信"


@pytest.mark.parametrize(
    "body",
    [
        b"\x1b$B",
        b"\x1b$B\x1b$B\x1b(I\x1b$(D!!\x1b(B",
        b"\x1b$B\xff\xfe\x1b(B",
        b"\x1b&@\x1b$B$\x1b(J",
        b"+2D8-+2D8Ad8-" * 50,
        bytes(range(256)) * 20,
    ],
)
@pytest.mark.parametrize(
    "charset",
    ["", "iso-2022-jp", "x-sjis", "gb2312", "big5", "ks_c_5601-1987", "utf-7", "koi8-r", "euc-jp"],
)
def test_broken_bytes_never_raise_and_never_leave_surrogates(body, charset):
    content_type = "text/plain" + (f"; charset={charset}" if charset else "")
    text = _part(content_type, body)
    assert not re.search("[\ud800-\udfff]", text)
    text.encode("utf-8")
    result = classify_message(
        b"From: MAILER-DAEMON@example.net\r\nSubject: =?"
        + (charset or "x").encode()
        + b"?B?"
        + base64.b64encode(body[:200])
        + b"?=\r\nContent-Type: "
        + content_type.encode()
        + b"\r\n\r\n"
        + body
    )
    assert not result.failed


# --- the fragments themselves --------------------------------------------------------

FRAGMENTS = [
    name
    for name in dir(languages)
    if name.isupper() and isinstance(getattr(languages, name), str) and not name.startswith("_")
]


@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragments_are_lower_case_and_compile(name):
    fragment = getattr(languages, name)
    assert fragment == fragment.lower(), name
    re.compile(fragment)


# The convention matches its fragments on lower-cased text; wording.py and
# auto_reply.py compile theirs with re.IGNORECASE.
_CONVENTION_FRAGMENTS = {
    "DEAD_ADDRESS",
    "DOMAIN_NOT_FOUND",
    "MAILBOX_FULL",
    "SUSPENDED",
    "SENDER_SIDE",
    "POLICY",
    "TEMPORARY",
    "NO_LONGER",
}


@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragments_do_bounded_work_on_hostile_text(name):
    flags = 0 if name in _CONVENTION_FRAGMENTS else re.IGNORECASE
    pattern = re.compile(getattr(languages, name), flags)
    # Near misses repeated: every position starts a partial match that fails.
    hostile = [
        "аккаунт " * 4000,
        "ящик ящик не " * 2500,
        "用户" * 16000,
        "casella di posta " * 2000,
        "konto " * 6000 + "x",
        "ユーザ" * 10000,
        "差出人の" * 8000,
    ]
    started = time.perf_counter()
    for text in hostile:
        pattern.search(text)
    assert time.perf_counter() - started < 3.0, name


# --- addresses written against words of scripts without spaces ------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("宛先taro@docomo.exampleは存在しません", "taro@docomo.example"),
        ("收件人wangzhe@qq.example不存在", "wangzhe@qq.example"),
        ("받는사람kim@naver.example의 메일 주소", "kim@naver.example"),
        ("Получатель:ivan@mail.exampleне найден", "ivan@mail.example"),
        ("josé@exämple.de", "josé@exämple.de"),
    ],
)
def test_addresses_stop_where_words_of_another_script_start(text, address):
    from bounce_tracker.classify.text import addresses_in

    assert addresses_in(text) == [address]


def test_the_words_after_an_address_still_decide():
    assert classify_reply("550 taro@docomo.exampleは存在しません").kind == HARD
    assert classify_reply("550 宛先<taro@docomo.example>ユーザ不明").kind == HARD
    assert classify_reply("552 liu@163.example邮箱空间已满").kind == SOFT


@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragments_are_guarded_by_their_first_characters(name):
    # Each fragment is a long alternation searched over whole reports: a look-ahead
    # for the characters its matches can start with turns most positions away.
    assert getattr(languages, name).startswith("(?=["), name


def test_the_guard_keeps_every_match():
    fragment = r"\bab(?:c|d)|(?:xy|z)w|[pq]r|(?<!n)mo"
    guarded = languages._guarded(fragment)
    assert guarded.startswith("(?=[")
    for text in ["abc", "abd", "xyw", "zw", "pr", "qr", "mo"]:
        assert re.search(guarded, text), text
    assert languages._guarded(r"a|.b") == r"a|.b"  # unsure: left as it is


def test_each_recipient_of_a_report_in_another_language_gets_its_own_verdict():
    body = (
        "メールを配信できませんでした。\n\n"
        "宛先: taro@docomo.example\n宛先のメールアドレスは存在しません。\n\n"
        "宛先: hanako@au.example\nメールボックスの容量超過のため配信できませんでした。\n"
    )
    result = classify_message(
        _bounce(
            _word("配信エラー", "ISO-2022-JP", "iso2022_jp"),
            body,
            "iso-2022-jp",
            "iso2022_jp",
            "7bit",
        )
    )
    kinds = {r.address: r.kind for r in result.recipients}
    assert kinds == {"taro@docomo.example": HARD, "hanako@au.example": SOFT}, result.reason
    body = (
        "Письмо не удалось доставить.\n\n"
        "ivan@mail.example: Пользователь не найден\n"
        "olga@mail.example: Почтовый ящик переполнен\n"
    )
    result = classify_message(_bounce("Undelivered", body, "koi8-r", "koi8_r"))
    kinds = {r.address: r.kind for r in result.recipients}
    assert kinds == {"ivan@mail.example": HARD, "olga@mail.example": SOFT}, result.reason
