"""``inspect_bounce`` classifies files without a database (no django_db mark here:
pytest-django would fail any test that touched one)."""

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from tests import messages

ROOT = Path(__file__).resolve().parent.parent


def test_json_output_has_one_object_per_file_and_goes_on_after_an_unreadable_one(tmp_path):
    hard = tmp_path / "hard.eml"
    hard.write_bytes(messages.dsn())
    auto = tmp_path / "auto.eml"
    auto.write_bytes(messages.auto_reply())
    out = StringIO()
    call_command(
        "inspect_bounce", "--json", str(hard), str(tmp_path / "missing.eml"), str(auto), stdout=out
    )
    reports = [json.loads(line) for line in out.getvalue().splitlines()]

    assert [r["path"] for r in reports] == [str(hard), str(tmp_path / "missing.eml"), str(auto)]
    assert reports[0]["kind"] == "hard"
    assert reports[0]["status"] == "5.1.1"
    assert "User unknown" in reports[0]["diagnostic"]
    assert reports[0]["recipients"][0] == {
        "address": "dead@example.org",
        "status": "5.1.1",
        "inferred_status": None,
        "status_inferred": False,
        "kind": "hard",
        "action": "failed",
    }
    assert (reports[0]["inferred_status"], reports[0]["status_inferred"]) == (None, False)
    assert "error" in reports[1]
    assert reports[2]["kind"] == "auto_reply"
    assert reports[2]["status"] is None


def test_text_output_names_kind_status_and_recipient(tmp_path):
    path = tmp_path / "bounce.eml"
    path.write_bytes(messages.dsn())
    out = StringIO()
    call_command("inspect_bounce", str(path), stdout=out)
    assert f"{path}: hard 5.1.1" in out.getvalue()
    assert "dead@example.org" in out.getvalue()


def test_it_works_before_migrate_and_without_bounce_tracker_settings(tmp_path):
    path = tmp_path / "bounce.eml"
    path.write_bytes(messages.dsn())
    settings_module = tmp_path / "bare_settings.py"
    settings_module.write_text(
        "SECRET_KEY = 'x'\nINSTALLED_APPS = ['bounce_tracker']\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': '{tmp_path / 'never-created.sqlite3'}'}}}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "inspect_bounce", "--json", str(path)],
        env={
            "PYTHONPATH": f"{ROOT}:{tmp_path}",
            "DJANGO_SETTINGS_MODULE": "bare_settings",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "hard"
    assert not (tmp_path / "never-created.sqlite3").exists()
