"""The access log as a transparency log (issue 14, item 1)."""
