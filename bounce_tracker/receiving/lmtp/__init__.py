"""The resident LMTP receiver, in two layers.

- :mod:`bounce_tracker.receiving.lmtp.protocol`: the LMTP conversation (RFC 2033) on
  asyncio streams, with bounded memory; no Django. The application plugs in through
  its ``Delivery`` protocol.
- :mod:`bounce_tracker.receiving.lmtp.service`: what makes it a bounce receiver —
  the listening socket, the pool of database threads that record each message with
  :func:`bounce_tracker.receiving.receive.receive_message`, graceful shutdown and the
  pre-fork supervisor.

``manage.py receive_bounces`` only reads its options and the settings, binds the
socket and calls :func:`bounce_tracker.receiving.lmtp.service.run_receiver`.
"""
