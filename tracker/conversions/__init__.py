"""Conversions: goals, funnels, retention cohorts and experiments, computed exactly from users'
histories (`tracker.query.events.UserHistory`).

Each query is a per-host partial over that host's users plus an exact merge of the partials
(`tracker.conversions.query`); every user lives on one host, so the partials add up without
double counting. Definitions are `tracker.conversions.definitions`, kept durably by
`tracker.conversions.store`. Nothing here knows Ray or HTTP.
"""
