import os

# Playwright's sync API runs an event loop in the test thread; Django would refuse the
# ORM calls these tests make (set-up, reading the second-factor code, the database
# flush afterwards). Set for the whole run once browser tests are collected.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
