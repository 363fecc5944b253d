from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class BounceTrackerConfig(AppConfig):
    name = "bounce_tracker"
    verbose_name = _("Bounce tracker")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bounce_tracker import checks  # noqa: F401  (registers the system checks)

        if apps.is_installed("django.contrib.auth") and apps.is_installed(
            "django.contrib.contenttypes"
        ):
            from bounce_tracker.core.permissions import create_support_group

            post_migrate.connect(
                create_support_group, sender=self, dispatch_uid="bounce_tracker_support_group"
            )

        try:  # the optional extra "anymail": record ESP events (docs/esp.rst)
            from anymail.signals import tracking
        except ImportError:
            pass
        else:
            from bounce_tracker.receiving.esp import record_tracking_event

            tracking.connect(record_tracking_event, dispatch_uid="bounce_tracker_esp_tracking")
