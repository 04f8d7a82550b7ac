"""What is derived of a visit at ingest: where it came from (referrer host, campaign, channel),
what it runs on (browser, OS, device type), the country, and whether it is a bot.

Each derivation is pure, free of Ray and HTTP, and runs once per session (`derive.derive_visit`);
only the derived values are stored, never the client's address.
"""
