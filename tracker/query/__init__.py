"""Queries computed exactly over users' durable histories, each host over its own users.

`events.py` declares what a query reads of one user: their visits (sessions, with what was
derived of them at ingest) and their events in order. Each host holds its users' histories in
this form, answers a query with a partial result over them, and the partials are merged.
"""
