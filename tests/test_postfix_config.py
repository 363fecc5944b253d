import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bounce_tracker.core.settings import get_settings
from bounce_tracker.ops.postfix import PipeOptions, PostfixConfigError, check, pipe_argv, render

ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = str(ROOT / "example_project" / "manage.py")
LAUNCHER = str(ROOT / "bounce_tracker" / "ops" / "pipe_launcher.py")


def options(**overrides):
    return PipeOptions(
        **{"python": "/usr/bin/python3", "manage_py": "/srv/site/manage.py", **overrides}
    )


def rendered(**overrides):
    out = StringIO()
    call_command(
        "bounce_postfix_config",
        "--manage-py",
        MANAGE_PY,
        *overrides.get("args", []),
        stdout=out,
        stderr=StringIO(),
    )
    return out.getvalue()


def test_the_output_has_every_part_with_absolute_paths_and_settings():
    text = rendered()
    pipe_line = next(line for line in text.splitlines() if "argv=" in line)
    # The interpreter runs the launcher, which sets the environment and runs manage.py.
    assert pipe_line.strip() == (
        f"flags=Rq user=nobody argv={os.path.abspath(sys.executable)} -I -S {LAUNCHER} "
        f"DJANGO_SETTINGS_MODULE=tests.settings {MANAGE_PY} "
        "handle_bounce -- ${sender} ${recipient}"
    )
    assert os.path.isabs(LAUNCHER)
    assert "bouncehandler unix - n n - 10 pipe" in text
    assert "bouncehandler_destination_recipient_limit = 1" in text
    assert "recipient_delimiter = +" in text
    assert "transport_maps = hash:/etc/postfix/transport" in text
    assert "bounces.example.com    bouncehandler:" in text
    assert "relay_domains = bounces.example.com" in text
    for part in ("main.cf", "master.cf", "/etc/postfix/transport"):
        assert f"# ---- {part}" in text


def test_options_change_the_service_user_concurrency_map_and_environment(monkeypatch):
    monkeypatch.setenv("SITE_ENV_FILE", "/etc/site/env")
    text = rendered(
        args=[
            "--service",
            "djbounce",
            "--user",
            "www-data",
            "--maxproc",
            "4",
            "--map-type",
            "texthash",
            "--transport-path",
            "/etc/postfix/bt",
            "--env",
            "SITE_ENV_FILE",
            "--env",
            "MODE=pipe",
        ]
    )
    assert "djbounce unix - n n - 4 pipe" in text
    assert "user=www-data " in text
    assert "djbounce_destination_recipient_limit = 1" in text
    assert "transport_maps = texthash:/etc/postfix/bt" in text
    assert f"{LAUNCHER} DJANGO_SETTINGS_MODULE=tests.settings SITE_ENV_FILE=/etc/site/env " in text
    assert f" SITE_ENV_FILE=/etc/site/env MODE=pipe {MANAGE_PY} handle_bounce -- " in text


def test_the_delimiter_follows_the_verp_setting(settings):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "VERP_DELIMITER": "-"}
    assert "recipient_delimiter = -" in rendered()


def test_a_relative_launcher_path_is_refused():
    with pytest.raises(PostfixConfigError, match="launcher"):
        render(options(launcher="pipe_launcher.py"), get_settings())


def test_dollars_are_doubled_and_spaces_are_braced_in_argv():
    argv = pipe_argv(options(environment={"A": "x$y", "B": "two words"}))
    assert "A=x$$y" in argv
    assert "{B=two words}" in argv


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"user": "root"}, "unprivileged"),
        ({"user": "postfix"}, "unprivileged"),
        ({"python": "python3"}, "absolute"),
        ({"service": "Bad Name"}, "Service name"),
        ({"maxproc": 0}, "Process limit"),
        ({"environment": {"1BAD": "x"}}, "not valid"),
        ({"map_type": "mysql"}, "Map type"),
    ],
)
def test_unsafe_or_broken_options_are_refused(overrides, problem):
    with pytest.raises(PostfixConfigError, match=problem):
        render(options(**overrides), get_settings())


def test_the_command_explains_a_bad_option_or_unset_variable():
    with pytest.raises(CommandError, match="unprivileged"):
        rendered(args=["--user", "root"])
    with pytest.raises(CommandError, match="NOT_SET_ANYWHERE"):
        rendered(args=["--env", "NOT_SET_ANYWHERE"])


def test_without_manage_py_the_command_asks_for_its_path():
    result = subprocess.run(
        [sys.executable, "-m", "django", "bounce_postfix_config"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "--manage-py" in result.stderr


@pytest.mark.postfix
def test_postfix_check_passes_on_the_rendered_configuration():
    # The command's --check (postfix check and the pipe's probe): tests/test_postfix_check.py.
    assert os.geteuid() == 0, "postfix check needs root"
    result = check(options(python=sys.executable, manage_py=MANAGE_PY), get_settings())
    assert result.ok, result.output


def test_without_lmtp_the_pipe_is_rendered_and_no_lmtp_route():
    text = rendered()
    assert "lmtp:" not in text
    assert "bounces.example.com    bouncehandler:" in text


@pytest.mark.parametrize(
    ("args", "nexthop", "listen"),
    [
        (["--lmtp"], "lmtp:inet:127.0.0.1:10025", "receive_bounces 127.0.0.1:10025"),
        (["--lmtp", "127.0.0.1:2424"], "lmtp:inet:127.0.0.1:2424", "127.0.0.1:2424"),
        (["--lmtp", "inet:[::1]:24"], "lmtp:inet:[::1]:24", "[::1]:24"),
        (
            ["--lmtp", "/var/spool/postfix/private/bounces"],
            "lmtp:unix:/var/spool/postfix/private/bounces",
            "--unix /var/spool/postfix/private/bounces",
        ),
        (["--lmtp", "unix:/run/b.sock"], "lmtp:unix:/run/b.sock", "--unix /run/b.sock"),
    ],
)
def test_lmtp_routes_the_bounce_domain_to_the_receiver(args, nexthop, listen):
    text = rendered(args=args)
    assert f"bounces.example.com    {nexthop}\n" in text
    assert "relay_domains = bounces.example.com" in text
    assert "transport_maps = hash:/etc/postfix/transport" in text
    assert "recipient_delimiter = +" in text
    assert listen in text
    # No pipe service and no per-recipient limit: LMTP replies per recipient.
    assert "handle_bounce" not in text
    assert "destination_recipient_limit" not in text
    assert " pipe\n" not in text
    for part in ("main.cf", "master.cf", "/etc/postfix/transport"):
        assert f"# ---- {part}" in text


@pytest.mark.parametrize("address", ["inet:host", "unix:relative", "bad address:1", "tcp:x:1"])
def test_a_bad_lmtp_address_is_refused(address):
    with pytest.raises(PostfixConfigError, match="LMTP address"):
        render(options(lmtp=address), get_settings())


@pytest.mark.postfix
def test_postfix_check_passes_on_the_lmtp_configuration():
    assert os.geteuid() == 0, "postfix check needs root"
    result = check(
        options(python=sys.executable, manage_py=MANAGE_PY, lmtp="inet:127.0.0.1:10025"),
        get_settings(),
    )
    assert result.ok, result.output


def test_the_check_compares_with_the_environment_the_command_started_with(monkeypatch):
    # Settings may copy a file's variables into os.environ; those need no --env.
    from bounce_tracker.ops.pipe_check import initial_environment

    monkeypatch.setenv("BT_SET_BY_SETTINGS", "1")
    started_with = initial_environment()
    assert "BT_SET_BY_SETTINGS" not in started_with
    assert started_with["PATH"] == os.environ["PATH"]
