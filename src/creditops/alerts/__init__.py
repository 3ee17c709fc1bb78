"""Alerts: when a monitored level calls for a message, and delivering it.

Owns the notification model and episode tracker (``episodes``, pure), the message formats
of every channel (``messages``, pure), the senders (``senders``: the only SMTP and HTTP
client code of creditops), the channel settings (``settings``, composed into
:mod:`creditops.settings`) and the dispatcher that ties them together (``dispatch``).
Must not import the services, the store, the registry or any entry point; what a check
observed arrives as a level and an :class:`~creditops.alerts.episodes.Alert`.
"""
