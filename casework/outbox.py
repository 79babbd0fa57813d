"""The notification outbox (issue 13, item 5)."""
