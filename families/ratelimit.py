"""Rate limits on the shared cache, per IPv4 address and per IPv6 /64 (one household or
phone gets a /64; counting single IPv6 addresses would count nothing), or per key (a
request's own limit, whichever client writes).

When the shared cache fails (down, or silent for PASSAGE_REDIS_TIMEOUT), the attempt is
counted in this process's memory instead, and the process leaves the shared cache alone
for PASSAGE_REDIS_PAUSE_SECONDS. The page answers as always and at once, and the limit
still holds: per process for the outage (a client whose requests land on N processes gets
at most N times the limit), never no limit at all (SECURITY.md case 39).
"""

import ipaddress
import logging
import threading
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

from casework.security import client_ip

logger = logging.getLogger(__name__)

# This process's own counts, used only while the shared cache is unreachable. Not an
# entry of CACHES: every configured cache must be shared (deploy check passage.E014).
LOCAL = LocMemCache("passage-ratelimit-fallback", {"OPTIONS": {"MAX_ENTRIES": 20000}})
_pause = threading.Lock()
_shared_paused_until = 0.0  # time.monotonic() before which the shared cache is not asked


def bucket(request) -> str:
    address = client_ip(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def hit(request, scope: str, limit: int, window: int = 3600) -> bool:
    """Count one attempt from this client; True while within the limit (a fixed window)."""
    return hit_key(f"{scope}:{bucket(request)}", limit, window)


def hit_key(key: str, limit: int, window: int = 3600) -> bool:
    """Count one attempt against `key` (ids and codes only); True while within the limit."""
    global _shared_paused_until
    key = f"passage:rate:{key}:{int(time.time()) // window}"
    if time.monotonic() >= _shared_paused_until:
        try:
            return _count(caches["default"], key, window) <= limit
        except Exception as exc:  # down, silent or refusing: count here instead
            with _pause:
                _shared_paused_until = time.monotonic() + settings.PASSAGE_REDIS_PAUSE_SECONDS
            logger.warning(
                "rate limit counted in this process: shared cache unavailable (%s)",
                type(exc).__name__,
            )
    return _count(LOCAL, key, window) <= limit


def _count(store, key: str, window: int) -> int:
    try:
        return store.incr(key)
    except ValueError:  # the window's first attempt
        store.add(key, 0, window + 60)
        return store.incr(key)


def resume_shared() -> None:
    """Ask the shared cache again from the next attempt on (tests; an operator's shell)."""
    global _shared_paused_until
    with _pause:
        _shared_paused_until = 0.0
