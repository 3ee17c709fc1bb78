"""Message brokers: the only package that imports a broker client (today ``nats-py`` for
NATS JetStream). It sends already-serialized events and reports what the broker
acknowledged; it knows nothing of the outbox, the database or the event contents. Imports
nothing from creditops but :mod:`creditops.errors`.
"""
