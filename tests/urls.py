from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls)]

if find_spec("anymail"):  # the optional extra; tests/test_esp_events.py posts to these
    urlpatterns.append(path("anymail/", include("anymail.urls")))
