import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from bounce_tracker.checks import check_settings
from bounce_tracker.core.settings import DEFAULTS, get_settings
from bounce_tracker.receiving.settings import get_mailbox_settings
from bounce_tracker.sending.settings import get_sending_settings

BASE = {
    "BOUNCE_DOMAIN": "bounces.example.com",
    "BACKEND": "django.core.mail.backends.locmem.EmailBackend",
}


def ids_for(**values):
    with override_settings(BOUNCE_TRACKER={**BASE, **values}):
        return [message.id for message in check_settings()]


def not_callable_policy():  # pragma: no cover - only its name is used
    pass


NOT_CALLABLE = 42


def test_valid_settings_produce_no_messages():
    assert ids_for() == []


def test_the_checks_run_with_djangos_check_framework():
    with override_settings(BOUNCE_TRACKER={"BACKEND": BASE["BACKEND"]}):
        assert "bounce_tracker.E001" in [m.id for m in checks.run_checks()]


@pytest.mark.parametrize(
    ("values", "check_id"),
    [
        ({"BOUNCE_DOMAIN": None}, "bounce_tracker.E001"),
        ({"BOUNCE_DOMAIN": "not a domain"}, "bounce_tracker.E001"),
        ({"BOUNCE_DOMAIN": "user@example.com"}, "bounce_tracker.E001"),
        ({"BOUNCE_DOMAIN": "localhost"}, "bounce_tracker.E001"),
        ({"VERP_PREFIX": "Bounces"}, "bounce_tracker.E002"),
        ({"VERP_PREFIX": ""}, "bounce_tracker.E002"),
        ({"VERP_PREFIX": "bad prefix"}, "bounce_tracker.E002"),
        ({"VERP_PREFIX": "x" * 40}, "bounce_tracker.E002"),
        ({"VERP_DELIMITER": "@"}, "bounce_tracker.E003"),
        ({"VERP_DELIMITER": "-", "VERP_PREFIX": "my-bounces"}, "bounce_tracker.E003"),
        ({"BACKEND": "no.such.Backend"}, "bounce_tracker.E004"),
        ({"BACKEND": "django.core.mail.EmailMessage"}, "bounce_tracker.E004"),
        ({"BACKEND": "bounce_tracker.backend.BounceTrackingBackend"}, "bounce_tracker.E005"),
        ({"POLICY": "no.such.policy"}, "bounce_tracker.E006"),
        ({"POLICY": "tests.test_checks.NOT_CALLABLE"}, "bounce_tracker.E006"),
        ({"SOFT_BOUNCE_LIMIT": 0}, "bounce_tracker.E007"),
        ({"SOFT_BOUNCE_LIMIT": 4}, "bounce_tracker.E007"),
        ({"SOFT_BOUNCE_LIMIT": "3"}, "bounce_tracker.E007"),
        ({"SOFT_BOUNCE_WINDOW_DAYS": 0}, "bounce_tracker.E008"),
        ({"SOFT_BOUNCE_WINDOW_DAYS": -1}, "bounce_tracker.E008"),
        ({"SOFT_BOUNCE_WINDOW_DAYS": "14"}, "bounce_tracker.E008"),
        ({"VERP_FORMAT": "plain"}, "bounce_tracker.E009"),
        ({"VERP_SECRET": "short"}, "bounce_tracker.E010"),
        ({"OBSERVE_ONLY": "yes"}, "bounce_tracker.E011"),
        ({"MAX_MESSAGE_BYTES": 1000}, "bounce_tracker.E012"),
        ({"MAX_MESSAGE_BYTES": "5MB"}, "bounce_tracker.E012"),
        ({"RAW_MESSAGE_MAX_BYTES": -1}, "bounce_tracker.E013"),
        ({"UNMATCHED_MAX_MESSAGES": 0}, "bounce_tracker.E014"),
        ({"UNMATCHED_MAX_MESSAGES": True}, "bounce_tracker.E014"),
        ({"SEND_WHEN_DATABASE_DOWN": "ignore"}, "bounce_tracker.E015"),
        ({"SEND_WHEN_DATABASE_DOWN": None}, "bounce_tracker.E015"),
        ({"MAILBOX_URL": "http://user:pass@mail.example.com"}, "bounce_tracker.E016"),
        ({"MAILBOX_URL": "imap://mail.example.com/INBOX"}, "bounce_tracker.E016"),
        ({"MAILBOX_URL": "imaps://user:pa/ss@mail.example.com"}, "bounce_tracker.E016"),
        ({"MAILBOX_URL": "pop3://user:pass@mail.example.com/Bounces"}, "bounce_tracker.E016"),
        ({"MAILBOX_URL": ""}, "bounce_tracker.E016"),
        ({"MAILBOX_PROCESSED_FOLDER": ""}, "bounce_tracker.E017"),
        ({"MAILBOX_PROCESSED_FOLDER": 7}, "bounce_tracker.E017"),
        (
            {
                "MAILBOX_URL": "pop3s://user:pass@mail.example.com",
                "MAILBOX_PROCESSED_FOLDER": "Done",
            },
            "bounce_tracker.E017",
        ),
        (
            {
                "MAILBOX_URL": "imaps://user:pass@mail.example.com",
                "MAILBOX_PROCESSED_FOLDER": "inbox",
            },
            "bounce_tracker.E017",
        ),
        ({"BOUNCE_DOMIAN": "typo.example.com"}, "bounce_tracker.W001"),
    ],
)
def test_each_bad_value_has_its_own_stable_check_id(values, check_id):
    assert check_id in ids_for(**values)


def test_a_good_mailbox_url_and_folder_pass_and_the_password_is_never_shown():
    values = {
        "MAILBOX_URL": "imaps://bounces%40example.com:p%2Fw@mail.example.com/Bounces",
        "MAILBOX_PROCESSED_FOLDER": "Bounces/Done",
    }
    assert ids_for(**values) == []
    with override_settings(BOUNCE_TRACKER={**BASE, "MAILBOX_URL": "imaps://u:hunter2/x@h"}):
        [message] = check_settings()
    assert "hunter2" not in f"{message.msg} {message.hint}"


def test_unknown_keys_are_a_warning_not_an_error():
    with override_settings(BOUNCE_TRACKER={**BASE, "TYPO": 1}):
        [message] = check_settings()
        assert message.level == checks.WARNING
        get_settings()  # still usable


def test_a_non_dict_setting_is_reported():
    with override_settings(BOUNCE_TRACKER=["BOUNCE_DOMAIN"]):
        assert [m.id for m in check_settings()] == ["bounce_tracker.E000"]


def test_get_settings_raises_improperly_configured_with_the_check_id():
    with (
        override_settings(BOUNCE_TRACKER={**BASE, "SOFT_BOUNCE_LIMIT": 9}),
        pytest.raises(ImproperlyConfigured, match=r"SOFT_BOUNCE_LIMIT.*E007"),
    ):
        get_settings()


def test_settings_are_read_when_used_not_at_import_time():
    with override_settings(BOUNCE_TRACKER={**BASE, "BOUNCE_DOMAIN": "First.Example.COM"}):
        assert get_settings().bounce_domain == "first.example.com"
    with override_settings(BOUNCE_TRACKER={**BASE, "BOUNCE_DOMAIN": "second.example.com"}):
        assert get_settings().bounce_domain == "second.example.com"


def test_every_default_is_valid_apart_from_the_required_domain():
    with override_settings(BOUNCE_TRACKER={"BOUNCE_DOMAIN": "b.example.com"}):
        settings_ = get_settings()
        sending = get_sending_settings()
        mailbox = get_mailbox_settings()
    assert sending.backend == DEFAULTS["BACKEND"]
    assert sending.policy == DEFAULTS["POLICY"]
    assert sending.send_when_database_down == "fail"
    assert mailbox.max_message_bytes == DEFAULTS["MAX_MESSAGE_BYTES"]
    assert mailbox.mailbox_url is None
    assert settings_.soft_bounce_limit == 3
    assert settings_.soft_bounce_window.days == 14
