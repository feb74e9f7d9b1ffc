from __future__ import annotations

from ipaddress import ip_address, ip_network

from aigw.gateway.core.http import client_address

PROXIES = [ip_network("10.0.0.0/8")]


def _scope(peer: str | None, forwarded: str | None = None) -> dict:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return {"client": None if peer is None else (peer, 1234), "headers": headers}


def test_the_peer_is_the_caller_without_trusted_proxies() -> None:
    assert client_address(_scope("203.0.113.5", "1.2.3.4"), []) == ip_address("203.0.113.5")


def test_behind_a_trusted_proxy_the_nearest_untrusted_hop_counts() -> None:
    scope = _scope("10.0.0.2", "198.51.100.7, 203.0.113.5, 10.0.0.9")
    # 198.51.100.7 was written by the caller itself and cannot be believed.
    assert client_address(scope, PROXIES) == ip_address("203.0.113.5")


def test_forwarded_header_from_an_untrusted_peer_is_ignored() -> None:
    scope = _scope("203.0.113.5", "10.0.0.1")
    assert client_address(scope, PROXIES) == ip_address("203.0.113.5")


def test_malformed_or_missing_values() -> None:
    assert client_address(_scope("10.0.0.2", "garbage"), PROXIES) == ip_address("10.0.0.2")
    assert client_address(_scope("10.0.0.2"), PROXIES) == ip_address("10.0.0.2")
    assert client_address(_scope(None), PROXIES) is None
    assert client_address({"client": ("unix-socket", 0), "headers": []}, PROXIES) is None
