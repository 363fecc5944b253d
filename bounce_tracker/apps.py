from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BounceTrackerConfig(AppConfig):
    name = "bounce_tracker"
    verbose_name = _("Bounce tracker")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bounce_tracker import checks  # noqa: F401  (registers the system checks)
