"""The shared core: what every room uses, importing none of them.

Settings (:mod:`~bounce_tracker.core.settings`), the kinds of message and the shape
of a verdict (:mod:`~bounce_tracker.core.kinds`), addresses, VERP return paths,
signals, database helpers (:mod:`~bounce_tracker.core.db`), recording an event
exactly once (:mod:`~bounce_tracker.core.events`) and the operations staff and site
code perform on an address (:mod:`~bounce_tracker.core.operations`).
``bounce_tracker.models`` and ``bounce_tracker.policy`` belong to the core too; they
stay at the paths Django and users' settings expect. docs/architecture.rst has the
whole map and the import rules.
"""
