"""The least a Django pipe target can do: read the message, one UPDATE, exit."""

import sys

from django.core.management.base import BaseCommand
from django.db.models import F
from django.db.models.functions import Now

from bounce_tracker.models import EmailAddressTracker


class Command(BaseCommand):
    requires_system_checks: tuple[str, ...] = ()
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("sender")
        parser.add_argument("recipient")

    def handle(self, *args, **options):
        sys.stdin.buffer.read()
        local_part = options["recipient"].rpartition("@")[0].lower()
        # In this order, MySQL's left-to-right SET reads the old values too.
        EmailAddressTracker.objects.filter(encoded_from=local_part).update(
            last_bounce3=F("last_bounce2"),
            last_bounce2=F("last_bounce"),
            last_bounce=Now(),
            bounce_count=F("bounce_count") + 1,
        )
