"""Rate limits on the shared cache, per IPv4 address and per IPv6 /64 (one household or
phone gets a /64; counting single IPv6 addresses would count nothing)."""

import ipaddress
import time

from django.core.cache import cache

from casework.security import client_ip


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
    """Count one attempt; True while within the limit (a fixed window)."""
    key = f"passage:rate:{scope}:{bucket(request)}:{int(time.time()) // window}"
    try:
        count = cache.incr(key)
    except ValueError:
        cache.add(key, 0, window + 60)
        count = cache.incr(key)
    return count <= limit
