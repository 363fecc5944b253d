"""Sphinx configuration for the django-bounce-tracker documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

# autodoc imports the app, whose models need configured settings: use the test suite's.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from bounce_tracker import __version__  # noqa: E402  (needs the sys.path entry above)

project = "django-bounce-tracker"
author = "django-bounce-tracker contributors"
copyright = "django-bounce-tracker contributors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",  # docs/performance.md
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

exclude_patterns = ["_build"]
language = "en"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Methods without their own docstring (open, close) must not show Django's text for the
# base class, which says the method does nothing.
autodoc_inherit_docstrings = False
autodoc_default_options = {"members": True}

html_theme = "furo"
html_title = f"django-bounce-tracker {release}"
