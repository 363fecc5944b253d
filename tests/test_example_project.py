"""The example site's commands work, as ``make demo`` runs them."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


def manage(*args, database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "true"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_commands_migrate_load_data_idempotently_and_send(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert manage("check", database_url=database_url).returncode == 0
    migrated = manage("migrate", "--noinput", database_url=database_url)
    assert migrated.returncode == 0, migrated.stderr

    first = manage("load_demo_data", database_url=database_url)
    second = manage("load_demo_data", database_url=database_url)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "demo-password" in second.stdout
    assert "http://127.0.0.1:8000/admin/" in second.stdout
    assert first.stdout.count("@") == second.stdout.count("@")

    sent = manage("send_demo_mail", database_url=database_url)
    assert sent.returncode == 0, sent.stderr
    assert "bounces" in sent.stdout
