"""The bounce dashboard in the admin: bounces per day by kind, and totals.

(Being built: a stub so the admin can link to it.)
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The dashboard page (admin-wrapped by EmailAddressTrackerAdmin.get_urls)."""
    return HttpResponse("Bounce dashboard")
