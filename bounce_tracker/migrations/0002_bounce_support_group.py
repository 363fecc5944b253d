"""The "Bounce support" group: sees everything, toggles IgnoreBounces, un-suppresses.

Its members can't delete addresses or history. Permissions are created after
migrations run, so they are created here first when missing.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

GROUP = "Bounce support"
PERMISSIONS = {
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


def create_group(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for model, permissions in PERMISSIONS.items():
        content_type, _ = ContentType.objects.get_or_create(app_label="bounce_tracker",
                                                            model=model)
        for codename, name in permissions:
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": name})
            group.permissions.add(permission)


def remove_group(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bounce_tracker", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
