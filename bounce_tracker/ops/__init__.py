"""The operations room: what administrators run beside the loop.

The Postfix configuration for this installation (:mod:`~bounce_tracker.ops.postfix`),
retention of the bounce history (:mod:`~bounce_tracker.ops.retention`) and the import
of the original recipe's table (:mod:`~bounce_tracker.ops.legacy`). It imports
neither the sending nor the receiving room.
"""
