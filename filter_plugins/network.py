# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for checking lab addresses against each other and against the machine's routes."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _network(value: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"{what}: {value!r} is not an IP network ({exc})") from exc


def ip_in_subnet(address: str, subnet: str) -> bool:
    """True when ADDRESS (with or without /prefix) lies inside SUBNET."""
    net = _network(subnet, "subnet")
    try:
        iface = ipaddress.ip_interface(address)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"address: {address!r} is not an IP address ({exc})") from exc
    return iface.ip in net


def overlapping_routes(routes: list[dict], subnet: str) -> list[str]:
    """Routes (from `ip -j route show table all`) whose destination overlaps SUBNET.

    The default route and the lab's own `unreachable` route for exactly SUBNET do not
    count: the first overlaps everything, the second is what the lab itself adds.
    """
    net = _network(subnet, "subnet")
    found = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default"):
            continue
        other = _network(dst, "route destination")
        if other.version != net.version or not other.overlaps(net):
            continue
        if route.get("type") == "unreachable" and other == net:
            continue
        dev = route.get("dev")
        found.append(f"{dst} dev {dev}" if dev else f"{route.get('type', 'route')} {dst}")
    return found


class FilterModule:
    def filters(self):
        return {
            "ip_in_subnet": ip_in_subnet,
            "overlapping_routes": overlapping_routes,
        }
