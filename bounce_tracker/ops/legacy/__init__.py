"""Importing the original PHP recipe's ``EmailAddressTracker`` table (``import_legacy_tracker``).

The source is the original MySQL/MariaDB table, read with MySQLdb directly; the
destination is :class:`~bounce_tracker.models.EmailAddressTracker` in the ``default``
database. The rules, in the order they apply (``docs/migrating.rst`` explains why):

1. **Rows.** ``EmailAddress`` is stripped and checked: empty, no ``@``, no local part
   or domain, a control character or whitespace, ``<``, ``>`` or ``,``, or longer than
   254 octets (also once the domain is in IDNA form) means the row is *skipped* and
   reported. Dates are read as naive values in the source time zone; zero dates
   (``0000-00-00 00:00:00``, also partial ones such as ``2020-05-00``) become NULL.
   Counts that are NULL or negative become 0.
2. **Case duplicates** in the source (rows whose addresses are equal once
   normalized) are *merged* into one address: counts summed, ``first_*`` the
   earliest, ``last_email`` the latest, the three latest distinct bounce times of all
   rows, ``ignore_bounces`` if any row had it. One ``EncodedFROM`` is kept: the one of
   the row with the latest ``LastEmail`` (the most recent mail bounces to it); ties go
   to the row whose ``EmailAddress`` sorts first. The others are reported as dropped.
3. **EncodedFROM** is kept, lower-cased, as ``encoded_from``, so bounces to the old
   return paths keep matching. A value that can't be stored (empty, over 64
   characters, whitespace, a control character or ``@``) is *re-encoded*: the
   address gets the local part this installation would give it.
4. **Conflicts.** Two source addresses with the same ``EncodedFROM``: the first by
   address keeps it, the other is re-encoded. An ``EncodedFROM`` already used by a
   tracker of another address: that tracker keeps it, the imported address is
   re-encoded. An address that already has a tracker with another ``encoded_from``:
   the existing ``encoded_from`` is kept (mail sent by this app since bounces to it)
   and the row is merged as in 5.
5. **An existing tracker** for the address is merged with the legacy values so that
   running the import again changes nothing: counts become the larger of the two
   (not the sum: a second run would add them again, and the app can't tell whether
   the existing counts already include the legacy ones), ``first_*`` the earliest,
   ``last_email`` the latest, the bounce times the three latest distinct of both,
   ``ignore_bounces`` true if either is. The suppression mark is never touched.

The modules, one job each:

- :mod:`~bounce_tracker.ops.legacy.source`: the URL, the connection, the schema
  check, streaming the rows;
- :mod:`~bounce_tracker.ops.legacy.cleaning`: rule 1;
- :mod:`~bounce_tracker.ops.legacy.merging`: rule 2, rule 4 within the source, rule 5;
- :mod:`~bounce_tracker.ops.legacy.writing`: rules 3 to 5 against the database, in
  batches;
- :mod:`~bounce_tracker.ops.legacy.report`: the counts and the text;
- :mod:`~bounce_tracker.ops.legacy.importer`: the run, with an optional progress
  callback (the command draws the bar; nothing here writes to a terminal).

This package exports the entry points:
:func:`~bounce_tracker.ops.legacy.importer.import_legacy_table`,
:class:`~bounce_tracker.ops.legacy.importer.LegacyImporter`,
:class:`~bounce_tracker.ops.legacy.report.ImportReport` and
:class:`~bounce_tracker.ops.legacy.source.LegacyImportError`.
"""

from bounce_tracker.ops.legacy.importer import (
    DEFAULT_BATCH_SIZE,
    ImportProgress,
    LegacyImporter,
    import_legacy_table,
)
from bounce_tracker.ops.legacy.report import ImportReport
from bounce_tracker.ops.legacy.source import DEFAULT_TABLE, LegacyImportError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TABLE",
    "ImportProgress",
    "ImportReport",
    "LegacyImportError",
    "LegacyImporter",
    "import_legacy_table",
]
