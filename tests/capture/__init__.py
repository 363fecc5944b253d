"""Capture bounce fixtures from real MTAs run on this machine.

One module per MTA (``python -m tests.capture.<mta>``): it installs nothing by
itself beyond what its docstring says, runs the MTA from a private directory with a
private configuration on loopback ports, makes it report failures, delays and
successes (its own local failures, and remote SMTP replies played by
:mod:`tests.smtp_sink`), and writes each report it produced, unchanged but for the
envelope, to ``tests/fixtures/bounces/captured/<mta>/``. Labels go into the one table
through :mod:`tests.fixture_labels`. Capturing is done once, by hand; the test suite
reads the stored messages and never runs the capture.
"""
