"""``manage.py send_demo_mail``: send one message with To, Cc and Bcc through the tracker.

With the default ``EMAIL_URL=consolemail://`` every per-recipient copy is printed;
the copies all show the same headers (Bcc never appears), and suppressed recipients
are logged by the ``bounce_tracker`` logger instead of being sent to. The command
then lists, per recipient, whether a copy went out and its envelope sender (VERP
return path), which the console backend does not print.
"""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand, CommandParser

from bounce_tracker.core.addresses import normalize_email, parse_address
from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import return_path
from bounce_tracker.models import EmailAddressTracker

# Addresses from load_demo_data: two are refused by the default policy.
DEFAULT_TO = ["Alice <alice@example.com>", "Bob.Smith@Example.org"]
DEFAULT_CC = ["gone@example.net"]  # suppressed by a hard bounce
DEFAULT_BCC = ["vip@example.com", "full-mailbox@example.org"]  # ignores bounces; over the limit


class Command(BaseCommand):
    help = "Send one demo message with To, Cc and Bcc through the bounce tracking backend."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", action="append", help="A To address (repeatable).")
        parser.add_argument("--cc", action="append", help="A Cc address (repeatable).")
        parser.add_argument("--bcc", action="append", help="A Bcc address (repeatable).")

    def handle(self, *args: Any, **options: Any) -> None:
        given = options["to"] or options["cc"] or options["bcc"]
        to = options["to"] or ([] if given else DEFAULT_TO)
        cc = options["cc"] or ([] if given else DEFAULT_CC)
        bcc = options["bcc"] or ([] if given else DEFAULT_BCC)

        message = EmailMessage(
            subject="Our monthly newsletter",
            body="Hello,\n\nthis is the django-bounce-tracker demo message.\n",
            to=to,
            cc=cc,
            bcc=bcc,
        )
        addresses = list(dict.fromkeys(normalize_email(parse_address(a)) for a in to + cc + bcc))
        rows = EmailAddressTracker.objects.filter(email__in=addresses)
        before = dict(rows.values_list("email", "msg_count"))
        sent = message.send()

        tracker_settings = get_settings()
        trackers = EmailAddressTracker.objects.in_bulk(addresses, field_name="email")
        self.stdout.write(f"Messages sent: {sent}. One copy per recipient:")
        width = max(len(address) for address in addresses)
        for address in addresses:
            tracker = trackers[address]
            copied = tracker.msg_count > before.get(address, 0)
            self.stdout.write(
                f"  {address:<{width}}  {'sent   ' if copied else 'skipped'}  return path "
                f"{return_path(tracker.encoded_from, tracker_settings)}"
            )
