"""Outbound URL policy: which URLs an integration may make the daemon call.

A tenant chooses an integration's base URL, so without a policy it could point the daemon at
internal services or a cloud metadata endpoint (server-side request forgery). By default only
https to public addresses is allowed. The check runs twice: on the URL before a request (the
scheme, the host name, literal addresses in every spelling the C library accepts: decimal
`2130706433`, hex `0x7f000001`, octal `0177.0.0.1`, short `127.1`, IPv6 with an embedded IPv4),
and on every address a host name resolves to, at connect time (`PolicyResolver`), so a DNS
name pointing at a private address, or re-pointed after the first check, is refused too.
Redirects are followed by the client one hop at a time, each hop checked again.

`allow_private_network` (an integration setting, off by default) permits http and private,
loopback and link-local targets, for self-hosted Jira and the simulator. Cloud metadata,
unspecified and multicast addresses are refused even then: no source lives there.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from etld.errors import EtldError, redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS over IPv6
    )
)
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ALLOW_HINT = " (an integration may set allow_private_network to reach its own network)"


class UrlPolicyError(EtldError):
    """A URL or address the policy refuses; `rule` says which rule, without the URL."""

    def __init__(self, url: str, rule: str) -> None:
        self.url = url
        self.rule = rule
        super().__init__(f"refusing {url}: {rule}")


@dataclass(frozen=True)
class UrlPolicy:
    allow_private_network: bool = False

    def check_url(self, url: str | URL) -> URL:
        """The parsed URL when the policy allows it; UrlPolicyError naming the rule otherwise."""
        text = redact_url(str(url))
        try:
            parsed = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError):
            raise UrlPolicyError(text, "the URL cannot be parsed") from None
        schemes = ("https", "http") if self.allow_private_network else ("https",)
        if parsed.scheme not in schemes:
            rule = f"scheme {parsed.scheme or '(none)'!r} is not allowed, only https"
            if parsed.scheme == "http":
                rule += _ALLOW_HINT
            raise UrlPolicyError(text, rule)
        if parsed.user is not None or parsed.password is not None:
            raise UrlPolicyError(text, "credentials inside the URL are not allowed")
        host = (parsed.raw_host or "").strip().rstrip(".").lower()
        if not host:
            raise UrlPolicyError(text, "the URL has no host")
        problem = self.host_problem(host)
        if problem is not None:
            raise UrlPolicyError(text, problem)
        return parsed

    def host_problem(self, host: str) -> str | None:
        """Why a host (name or literal address) is refused, or None."""
        host = host.strip("[]").rstrip(".").lower()
        if host in _METADATA_NAMES:
            return f"{host} is a cloud metadata service"
        address = literal_address(host)
        if address is not None:
            return self.address_problem(address)
        if host == "localhost" or host.endswith(".localhost"):
            if self.allow_private_network:
                return None
            return f"{host} is a loopback name{_ALLOW_HINT}"
        return None

    def address_problem(self, address: IPAddress) -> str | None:
        """Why connecting to this address is refused, or None."""
        inner = embedded_ipv4(address)
        if inner is not None:
            problem = self.address_problem(inner)
            return None if problem is None else f"{address} embeds {problem}"
        if address in _METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        if address.is_unspecified:
            return f"{address} is an unspecified address"
        if address.is_multicast:
            return f"{address} is a multicast address"
        if self.allow_private_network:
            return None
        for test, kind in (
            (address.is_loopback, "a loopback"),
            (address.is_link_local, "a link-local"),
            (address.is_reserved, "a reserved"),
            (address.is_private, "a private"),
            (not address.is_global, "a non-public"),
        ):
            if test:
                return f"{address} is {kind} address{_ALLOW_HINT}"
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells literally, in any form the C resolver would accept."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    return _legacy_ipv4(host)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    # inet_aton() reads 1 to 4 parts, each decimal, 0x-hex or 0-led octal; the last part fills
    # the remaining bytes. `2130706433`, `0x7f.1` and `0177.0.0.1` all mean 127.0.0.1.
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part.startswith(("0x", "0X")):
                values.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            elif part.isdigit():
                values.append(int(part))
            else:
                return None
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (5 - len(values)) + last
    return ipaddress.IPv4Address(number)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64, compatible)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    value = int(address)
    if value >> 32 == 0 and value > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(value)
    return None


class PolicyResolver(AbstractResolver):
    """Resolves through `inner`, then refuses the host if any address breaks the policy.

    Every address is checked, not just the first: the connector may try them all.
    """

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        problem = self.policy.host_problem(host)
        if problem is not None:
            raise UrlPolicyError(host, problem)
        results = await self.inner.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(str(result["host"]).split("%", 1)[0])
            problem = self.policy.address_problem(address)
            if problem is not None:
                raise UrlPolicyError(host, f"{host} resolves to {problem}")
        return results

    async def close(self) -> None:
        await self.inner.close()


def resolve_result(host: str, address: str, port: int = 0) -> ResolveResult:
    """A ResolveResult for tests and fixed resolvers."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(
        hostname=host,
        host=address,
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST,
    )
