"""``manage.py inspect_bounce [--json] FILE...``: classify message files, read-only.

Touches no database (works before ``migrate``) and needs no ``BOUNCE_TRACKER``
settings. A file that can't be read is reported (with an ``error`` field in JSON)
and the run goes on. When the classifier fails on a file, ``failed`` holds its
exception on one line and ``traceback`` the traceback (``kind`` is then
``not_bounce``, which ``handle_bounce`` would not record: it keeps such a message
for review); otherwise ``failed`` is null.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


class Command(BaseCommand):
    help = "Classify bounce message files without touching the database."
    requires_system_checks: tuple[str, ...] = ()
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="raw message files")
        parser.add_argument(
            "--json", action="store_true", help="one JSON object per file, one per line"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for path in options["files"]:
            report = inspect_file(path, _max_bytes())
            if options["json"]:
                self.stdout.write(json.dumps(report, ensure_ascii=False))
            else:
                self.stdout.write(_as_text(report))


def _max_bytes() -> int:
    from bounce_tracker.core.settings import merged_settings

    try:
        value = merged_settings().get("MAX_MESSAGE_BYTES", DEFAULT_MAX_BYTES)
    except Exception:  # a broken BOUNCE_TRACKER must not stop inspection
        return DEFAULT_MAX_BYTES
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_BYTES


def inspect_file(path: str, max_bytes: int) -> dict[str, Any]:
    """The classification of one file as a JSON-ready dict (or ``path`` and ``error``)."""
    from bounce_tracker.classify import classify_message
    from bounce_tracker.receiving.receive import read_message

    try:
        with open(path, "rb") as stream:
            message = read_message(stream, max_bytes)
    except OSError as exc:
        return {"path": path, "error": f"{type(exc).__name__}: {exc.strerror or exc}"}
    result = classify_message(message.data)
    return {
        "path": path,
        "kind": str(result.kind),
        "status": result.status,
        # A status the report didn't give, inferred from its wording (None if none).
        "inferred_status": result.inferred_status,
        "status_inferred": result.status_inferred,
        "diagnostic": result.diagnostic,
        "recipients": [
            {
                "address": r.address,
                "status": r.status,
                "inferred_status": r.inferred_status,
                "status_inferred": r.inferred_status is not None,
                "kind": str(r.kind),
                "action": r.action,
            }
            for r in result.recipients
        ],
        "reporting_mta": result.reporting_mta,
        "original_message_id": result.original_message_id,
        "reason": result.reason,
        "size": message.size,
        "truncated": message.truncated,
        "failed": result.failed or None,
        **({"traceback": result.extra.get("traceback", "")} if result.failed else {}),
    }


def _as_text(report: dict[str, Any]) -> str:
    if "error" in report:
        return f"{report['path']}: error: {report['error']}"
    status = report["status"] or "-"
    if report["status_inferred"]:
        status += f" (inferred {report['inferred_status']})"
    lines = [f"{report['path']}: {report['kind']} {status} ({report['reason']})"]
    if report["failed"]:
        lines.append(f"  classifier failed: {report['failed']}")
        lines.extend(f"  {line}" for line in report["traceback"].splitlines())
    if report["diagnostic"]:
        lines.append(f"  diagnostic: {report['diagnostic'][:200]}")
    for recipient in report["recipients"]:
        lines.append(
            f"  recipient: {recipient['address']} {recipient['status'] or '-'} {recipient['kind']}"
        )
    return "\n".join(lines)
