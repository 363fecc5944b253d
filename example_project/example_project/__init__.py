"""The django-bounce-tracker example site."""
