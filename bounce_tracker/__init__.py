"""django-bounce-tracker: VERP return paths, bounce tracking and a suppression policy."""

__version__ = "0.1.0.dev0"
