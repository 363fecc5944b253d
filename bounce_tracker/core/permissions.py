"""The "Bounce support" group: sees everything, toggles IgnoreBounces, un-suppresses.

Its members can't delete addresses or history. The group is created, with these
permissions, by the first ``migrate`` that finds it missing (when django.contrib.auth
is installed; sites without auth don't need it, so no migration depends on auth).
Once it exists it is the site's: later migrations never change it, so permissions an
administrator added or removed stay as they were.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

SUPPORT_GROUP = "Bounce support"

#: Model → (codename, name) of each permission the group gets.
SUPPORT_PERMISSIONS = {
    "emailaddresstracker": [
        ("view_emailaddresstracker", "Can view email address tracker"),
        ("toggle_ignore_bounces", "Can turn IgnoreBounces on and off"),
        ("unsuppress_address", "Can un-suppress an address and reset its counters"),
    ],
    "bounceevent": [("view_bounceevent", "Can view bounce event")],
    "unmatchedmessage": [
        ("view_unmatchedmessage", "Can view unmatched message"),
        ("change_unmatchedmessage", "Can change unmatched message"),
    ],
}


def create_support_group(using: str = "default", **kwargs: Any) -> None:
    """Create the group with its permissions when it doesn't exist; else leave it alone.

    Connected to ``post_migrate``. The permissions are created here if need be:
    auth's own ``post_migrate`` handler may run after this one.
    """
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    # One transaction: a migrate stopped half-way leaves no group without permissions.
    with transaction.atomic(using=using):
        group, created = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
        if not created:
            return
        granted = []
        for model, permissions in SUPPORT_PERMISSIONS.items():
            content_type, _ = ContentType.objects.db_manager(using).get_or_create(
                app_label="bounce_tracker", model=model
            )
            for codename, name in permissions:
                permission, _ = Permission.objects.using(using).get_or_create(
                    content_type=content_type, codename=codename, defaults={"name": name}
                )
                granted.append(permission)
        group.permissions.add(*granted)
