"""IP anonymisation and id pseudonyms: the scalar and the vectorised executors must agree."""

from __future__ import annotations

import ipaddress

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.ipanon import (
    IPV4_PREFIX,
    IPV6_PREFIX,
    PSEUDONYM_CHARS,
    anonymise_ip,
    anonymise_ip_series,
    pseudonymise,
    pseudonymise_series,
)

CASES = [
    ("1.2.3.4", "1.2.3.0"),
    ("255.255.255.255", "255.255.255.0"),
    ("0.0.0.0", "0.0.0.0"),
    ("113.76.1.*", "113.76.1.0"),  # iPinYou's masked form
    ("  10.0.0.7\t", "10.0.0.0"),
    ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
    ("2001:DB8:ABCD:FFFF:1:2:3:4", "2001:db8:abcd::"),
    ("::1", "::"),
    ("::ffff:1.2.3.4", "1.2.3.0"),  # IPv4-mapped: treated as the IPv4 address
    (None, None),
    ("", None),
    ("   ", None),
]
INVALID = ["1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4.5", "1.2.*.*", "abc", ":::", "1.2.3.-1"]


@pytest.mark.parametrize(("ip", "expected"), CASES)
def test_anonymise_ip(ip, expected):
    assert anonymise_ip(ip) == expected


@pytest.mark.parametrize("ip", INVALID)
def test_invalid_ip_raises_naming_the_value(ip):
    with pytest.raises(ValueError, match=f"not an IP address: {ip!r}".replace("*", r"\*")):
        anonymise_ip(ip)


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("192.168.77.200", IPV4_PREFIX),  # each with the bit after the prefix set
        ("2001:db8:abcd:8234:5678::1", IPV6_PREFIX),
        ("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", IPV6_PREFIX),
    ],
)
def test_result_is_the_network_address_at_the_declared_prefix(ip: str, prefix: int) -> None:
    """IPV4_PREFIX and IPV6_PREFIX are what targeting and rules rely on: hold them to it."""
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    assert anonymise_ip(ip) == str(network.network_address)
    assert anonymise_ip_series(pl.Series([ip])).to_list() == [str(network.network_address)]
    one_bit_more = ipaddress.ip_network(f"{ip}/{prefix + 1}", strict=False)
    assert anonymise_ip(ip) != str(one_bit_more.network_address)  # not a bit narrower either


def _agree(values: list[str | None]) -> None:
    vectorised = anonymise_ip_series(pl.Series("ip", values, dtype=pl.String)).to_list()
    for value, got in zip(values, vectorised, strict=True):
        try:
            expected = anonymise_ip(value)
        except ValueError:
            expected = None
        assert got == expected, value


def test_series_agrees_with_scalar_on_cases():
    _agree([ip for ip, _ in CASES] + INVALID)


def test_series_keeps_name_and_length():
    out = anonymise_ip_series(pl.Series("IP", ["1.2.3.4", None, "x", "2001:db8::1"]))
    assert out.name == "IP"
    assert out.to_list() == ["1.2.3.0", None, None, "2001:db8::"]


_IP_TEXT = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: str(a).rsplit(".", 1)[0] + ".*"),
    st.text(alphabet="0123456789abcdef.:*% \t", max_size=24),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_IP_TEXT, max_size=20))
def test_series_agrees_with_scalar_property(values):
    _agree(values)


def test_pseudonym_is_stable_short_and_not_the_raw_value():
    first = pseudonymise("DAILV_Dhx~z", "ipinyou")
    assert first == pseudonymise("DAILV_Dhx~z", "ipinyou")
    assert first is not None and len(first) == PSEUDONYM_CHARS
    assert "DAILV" not in first
    assert first != pseudonymise("DAILV_Dhx~z", "other-source")
    assert pseudonymise(None, "ipinyou") is None


def test_pseudonymise_series_agrees_with_scalar():
    values = ["a", "b", None, "a", "DAILV_Dhx~z"]
    out = pseudonymise_series(pl.Series("user", values), "ns")
    assert out.name == "user"
    assert out.to_list() == [pseudonymise(v, "ns") for v in values]
