"""The operations room: what administrators run beside the loop.

The Postfix configuration for this installation (:mod:`~bounce_tracker.ops.postfix`),
the pipe's standard-library launcher (:mod:`~bounce_tracker.ops.pipe_launcher`, run
as a script, never imported by the app) and the check that runs the pipe as Postfix
will (:mod:`~bounce_tracker.ops.pipe_check`), retention of the bounce history
(:mod:`~bounce_tracker.ops.retention`) and the import of the original recipe's
table (:mod:`~bounce_tracker.ops.legacy`). It imports neither the sending nor the
receiving room.
"""
