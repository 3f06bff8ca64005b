"""A log kept in a NATS JetStream stream: the client that the JetStream backend stands on.

Modules: ``url`` (locations, log names, subjects, KV keys; no NATS import),
``client`` (``LogClient``: connect, the log's stream, direct gets), ``publish``
(single, atomic batch, pipelined batches), ``reader`` (ordered reading and
following), ``kv`` (the log's buckets), ``groups`` (durable consumers),
``messages`` (the values and refusals they exchange), ``_loop`` (the event loop).

Importing this package imports no NATS client: ``nats`` (nats-py, the ``nats``
extra) is imported when a client is made, only for a ``nats://`` log.
"""
