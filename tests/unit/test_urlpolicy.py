"""The outbound URL policy: hostile URLs refused with the rule named, honest ones allowed."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from etld.sources.urlpolicy import (
    PolicyResolver,
    UrlPolicy,
    UrlPolicyError,
    embedded_ipv4,
    literal_address,
    resolve_result,
)

STRICT = UrlPolicy()
LENIENT = UrlPolicy(allow_private_network=True)

HOSTILE = {
    "http://example.atlassian.net": "scheme 'http'",
    "ftp://example.com/x": "scheme 'ftp'",
    "file:///etc/passwd": "scheme 'file'",
    "gopher://example.com": "scheme 'gopher'",
    "https://user:secret@example.com": "credentials inside the URL",
    "https://127.0.0.1": "loopback",
    "https://localhost:8443": "loopback name",
    "https://api.localhost": "loopback name",
    "https://[::1]": "loopback",
    "https://10.0.0.1": "private",
    "https://172.16.5.4": "private",
    "https://192.168.1.1": "private",
    "https://169.254.169.254/latest/meta-data/": "cloud metadata",
    "https://metadata.google.internal/computeMetadata/v1/": "cloud metadata",
    "https://100.100.100.200": "cloud metadata",
    "https://[fd00:ec2::254]": "cloud metadata",
    "https://0.0.0.0": "unspecified",
    "https://[::]": "unspecified",
    "https://224.0.0.1": "multicast",
    "https://[ff02::1]": "multicast",
    "https://[fe80::1]": "link-local",
    "https://169.254.1.1": "link-local",
    "https://240.0.0.1": "reserved",
    "https://100.64.0.1": "non-public",
    "https://2130706433": "loopback",  # decimal 127.0.0.1
    "https://0x7f000001": "loopback",  # hex
    "https://0177.0.0.1": "loopback",  # octal
    "https://127.1": "loopback",  # short form
    "https://0x7f.0.0.1": "loopback",
    "https://012.0.0.1": "private",  # octal 10.0.0.1
    "https://[::ffff:127.0.0.1]": "loopback",  # IPv4-mapped IPv6
    "https://[::ffff:a9fe:a9fe]": "cloud metadata",  # mapped 169.254.169.254, hex spelling
    "https://[64:ff9b::a00:1]": "private",  # NAT64 of 10.0.0.1
    "https://[2002:7f00:1::]": "loopback",  # 6to4 of 127.0.0.1
    "https://": "no host",
}


@pytest.mark.parametrize(("url", "rule"), HOSTILE.items())
def test_hostile_urls_are_refused_naming_url_and_rule(url: str, rule: str) -> None:
    with pytest.raises(UrlPolicyError) as caught:
        STRICT.check_url(url)
    message = str(caught.value)
    assert rule in message
    assert message.startswith("refusing ")
    if "secret" in url:
        assert "secret" not in message  # the password is redacted
    else:
        assert url in message


def test_at_least_fifteen_hostile_urls() -> None:
    assert len(HOSTILE) >= 15


@pytest.mark.parametrize(
    "url",
    [
        "https://example.atlassian.net",
        "https://example.atlassian.net/rest/api/3/myself",
        "https://8.8.8.8",
        "https://[2606:4700:4700::1111]",
        "https://jira.example.com:8443/jira",
    ],
)
def test_public_https_urls_are_allowed(url: str) -> None:
    assert STRICT.check_url(url).scheme == "https"


def test_allow_private_network_permits_http_and_local_targets() -> None:
    for url in (
        "http://127.0.0.1:8080",
        "http://localhost:2990/jira",
        "https://10.0.0.1",
        "http://[::1]:8080",
        "http://0x7f000001:80",
    ):
        LENIENT.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal",
        "http://0.0.0.0:8080",
        "http://224.0.0.1",
        "ftp://127.0.0.1",
    ],
)
def test_allow_private_network_still_refuses_metadata_and_nonsense(url: str) -> None:
    with pytest.raises(UrlPolicyError):
        LENIENT.check_url(url)


def test_the_refusal_says_how_to_allow_a_private_target() -> None:
    with pytest.raises(UrlPolicyError, match="allow_private_network"):
        STRICT.check_url("https://10.1.2.3")


def test_legacy_ipv4_forms_decode_like_inet_aton() -> None:
    expected = ipaddress.ip_address("127.0.0.1")
    for host in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.1", "0x7f.1"):
        assert literal_address(host) == expected
    assert literal_address("example.com") is None
    assert literal_address("1.2.3.4.5") is None
    assert literal_address("256.1.1.1") is None
    assert literal_address("08.1.1.1") is None  # 8 is not an octal digit


def test_embedded_ipv4_of_ipv6_forms() -> None:
    def inner(text: str) -> str | None:
        found = embedded_ipv4(ipaddress.ip_address(text))
        return None if found is None else str(found)

    assert inner("::ffff:10.0.0.1") == "10.0.0.1"
    assert inner("64:ff9b::c0a8:101") == "192.168.1.1"
    assert inner("2002:a00:1::") == "10.0.0.1"
    assert inner("::1") is None
    assert inner("2606:4700:4700::1111") is None


class FixedResolver(AbstractResolver):
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [resolve_result(host, a, port) for a in self.table[host]]

    async def close(self) -> None:
        return None


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    resolver = PolicyResolver(
        STRICT,
        FixedResolver(
            {
                "internal.example.com": ["10.1.2.3"],
                "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
                "mapped.example.com": ["::ffff:169.254.169.254"],
                "public.example.com": ["93.184.216.34"],
            }
        ),
    )
    for host, rule in (
        ("internal.example.com", "resolves to 10.1.2.3 is a private address"),
        ("mixed.example.com", "resolves to 127.0.0.1 is a loopback address"),
        ("mapped.example.com", "cloud metadata"),
        ("localhost", "loopback name"),
    ):
        with pytest.raises(UrlPolicyError, match=rule):
            await resolver.resolve(host, 443)
    assert [r["host"] for r in await resolver.resolve("public.example.com", 443)] == [
        "93.184.216.34"
    ]
