"""A log kept in a NATS JetStream stream: names and subjects (``url``) and the server client (``client``).

Importing this package imports no NATS client: ``nats`` (nats-py, the ``nats``
extra) is imported by ``client`` only, when a ``nats://`` log is opened.
"""
