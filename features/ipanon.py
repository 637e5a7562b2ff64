"""Anonymisation of personal fields, applied on ingestion before anything is stored or used.

IP addresses keep only their network: IPv4 /24 and IPv6 /48, enough for geography and ISP-level
features, too coarse to single out a household. iPinYou already masks the last IPv4 octet
("1.2.3.*"); such values are accepted and normalised to the same form as a full address
("1.2.3.0"), so one network is one category whatever the source. An IPv4-mapped IPv6 address
("::ffff:1.2.3.4") is treated as the IPv4 address it carries: its /48 would be "::", which
would merge every such client into one meaningless category.

Cookie-like ids are replaced by a truncated SHA-256 pseudonym: stable across runs and sources
(so counters and joins still work) but never the raw value.

The scalar functions (serving, tests) and the vectorised ones (ingestion) must agree; a test
checks that. IPv4 is fully vectorised. IPv6 and id hashing have no polars primitive, so they run
the scalar code once per *distinct* value, never once per row.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Final

import polars as pl

_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# ipaddress rejects leading zeros ("01.2.3.4") and non-ASCII digits; so does this pattern.
_IPV4: Final = rf"^({_OCTET}\.{_OCTET}\.{_OCTET})\.(?:{_OCTET}|\*)$"
_IPV4_RE: Final = re.compile(_IPV4)
_BLANK: Final = " \t\r\n"  # one definition of "blank" for both executors
PSEUDONYM_CHARS: Final = 16  # 64 bits: collisions stay negligible for billions of users
# The networks an IP is cut to. IPv4 drops the last octet (the pattern above and the vectorised
# path cut at the third dot, which is what 24 means); IPv6 is masked to IPV6_PREFIX bits. Anything
# that matches IPs after ingestion (targeting, rules) cannot look at a narrower range than these.
IPV4_PREFIX: Final = 24
IPV6_PREFIX: Final = 48


def anonymise_ip(ip: str | None) -> str | None:
    """The IPV4_PREFIX or IPV6_PREFIX network of `ip`; None for a missing (None or blank) value.

    Raises ValueError naming the value when it is not an IP address.
    """
    if ip is None:
        return None
    text = ip.strip(_BLANK)
    if not text:
        return None
    match = _IPV4_RE.match(text)
    if match:
        return f"{match.group(1)}.0"
    if ":" in text:
        try:
            addr = ipaddress.IPv6Address(text)
        except ValueError:
            pass
        else:
            if addr.ipv4_mapped is not None:
                return anonymise_ip(str(addr.ipv4_mapped))
            return str(ipaddress.IPv6Network((addr, IPV6_PREFIX), strict=False).network_address)
    raise ValueError(f"not an IP address: {ip!r}")


def _anonymise_or_none(ip: str) -> str | None:
    try:
        return anonymise_ip(ip)
    except ValueError:
        return None


def anonymise_ip_series(ips: pl.Series) -> pl.Series:
    """Vectorised `anonymise_ip`: same results, with null where the scalar raises.

    Ingestion compares the input's non-blank values with the nulls of the result to quarantine
    invalid addresses, so this does not raise.
    """
    text = ips.cast(pl.String).str.strip_chars(_BLANK)
    # Validate with the pattern, then drop the last octet: far faster than a capturing extract.
    v4 = pl.select(
        pl.when(pl.lit(text).str.contains(_IPV4))
        .then(pl.lit(text).str.strip_chars_end("0123456789*") + "0")
        .otherwise(None)
    ).to_series()
    v6_candidates = text.filter(text.str.contains(":", literal=True)).unique()
    if v6_candidates.len() == 0:
        return v4.alias(ips.name)
    v6_values = [_anonymise_or_none(v) for v in v6_candidates.to_list()]
    v6 = text.replace_strict(
        v6_candidates, pl.Series(v6_values, dtype=pl.String), default=None, return_dtype=pl.String
    )
    return v4.fill_null(v6).alias(ips.name)


def pseudonymise(value: str | None, namespace: str) -> str | None:
    """A stable pseudonym for a cookie or user id; `namespace` keeps sources' ids apart."""
    if value is None:
        return None
    digest = hashlib.sha256(f"{namespace}:{value}".encode()).hexdigest()
    return digest[:PSEUDONYM_CHARS]


def pseudonymise_series(values: pl.Series, namespace: str) -> pl.Series:
    """Vectorised `pseudonymise`, hashing each distinct value once."""
    text = values.cast(pl.String)
    distinct = text.drop_nulls().unique()
    hashed = pl.Series([pseudonymise(v, namespace) for v in distinct.to_list()], dtype=pl.String)
    return text.replace_strict(distinct, hashed, default=None, return_dtype=pl.String).alias(
        values.name
    )
