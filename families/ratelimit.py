"""Rate limits on the shared cache, per IPv4 address and per IPv6 /64 (one household or
phone gets a /64; counting single IPv6 addresses would count nothing), or per key (a
request's own limit, whichever client writes)."""

import ipaddress
import logging
import time

from django.core.cache import cache

from casework.security import client_ip

logger = logging.getLogger(__name__)


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
    """Count one attempt against `key` (ids and codes only); True while within the limit.

    A cache that is down lets the attempt through (logged, without the key): the public
    pages keep working and answering alike rather than failing (SECURITY.md case 39)."""
    key = f"passage:rate:{key}:{int(time.time()) // window}"
    try:
        try:
            count = cache.incr(key)
        except ValueError:
            cache.add(key, 0, window + 60)
            count = cache.incr(key)
    except Exception as exc:  # the cache is down or refuses: count nothing
        logger.warning("rate limit not counted: cache unavailable (%s)", type(exc).__name__)
        return True
    return count <= limit
