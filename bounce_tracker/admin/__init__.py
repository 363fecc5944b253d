"""Django admin for support staff: addresses, their bounce history, unmatched mail.

Support staff answer "why doesn't this customer get our mail?" here (docs/admin.rst).
Django's admin autodiscovery imports this package; importing the three modules
below registers their admins. The rest, by job:

- :mod:`~bounce_tracker.admin.text`: text that arrived by mail shown as text: escaped,
  with Unicode bidirectional controls made visible so they can't reorder what staff read;
- :mod:`~bounce_tracker.admin.base`: the admins' base (names shown inertly, own pages);
- :mod:`~bounce_tracker.admin.state`: an address's policy state in words and badges;
- :mod:`~bounce_tracker.admin.filters`, :mod:`~bounce_tracker.admin.inlines` (the
  bounce history), :mod:`~bounce_tracker.admin.received` (the stored messages'
  columns; raw messages as text or download);
- :mod:`~bounce_tracker.admin.dashboard` and :mod:`~bounce_tracker.admin.charts`.

Every change made here goes through :mod:`bounce_tracker.core.operations` or
:func:`bounce_tracker.receiving.receive.record_unmatched_message` and is written to
Django's admin log.
"""

from bounce_tracker.admin import events, trackers, unmatched

__all__ = ["events", "trackers", "unmatched"]
