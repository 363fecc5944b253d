"""Postfix configuration templates, rendered by ``manage.py bounce_postfix_config``.

Installed as ``bounce_tracker.postfix_templates`` (see pyproject.toml). Placeholders
are ``{{ name }}``; everything else is copied as written, ``$`` included.
"""
