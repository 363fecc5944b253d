"""The "Bounce support" group: sees everything, toggles IgnoreBounces, un-suppresses.

Its members can't delete addresses or history. The group is created (and its
permissions completed) after every ``migrate``, when django.contrib.auth is
installed; sites without auth don't need it, so no migration depends on auth.
"""

from __future__ import annotations

from typing import Any

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
    """Create the group and give it its permissions; safe to run any number of times."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    for model, permissions in SUPPORT_PERMISSIONS.items():
        content_type, _ = ContentType.objects.db_manager(using).get_or_create(
            app_label="bounce_tracker", model=model
        )
        for codename, name in permissions:
            permission, _ = Permission.objects.using(using).get_or_create(
                content_type=content_type, codename=codename, defaults={"name": name}
            )
            group.permissions.add(permission)
