"""Which proxy, if any, a URL goes through: httpx's rules (`trust_env`), without importing httpx.

`doctor` and the team profile fetch use httpx, which honours HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY
(either case; on macOS and Windows also the system's proxy settings). The core's own client (`http1`) must
take the same route for the same URL, or `doctor` would report on a path the tray does not use. So this
module reads the settings with the same standard-library call httpx uses (`urllib.request.getproxies`) and
turns them into the same ordered URL patterns httpx builds in `httpx._utils.get_environment_proxies` and
matches with `httpx._utils.URLPattern`. tests/core/test_proxy.py checks the two agree, route by route.

httpx's rules, for the record (they differ from curl's in places):
- NO_PROXY entries: `*` turns every proxy off; `host` matches the host and its subdomains; `.host` only
  subdomains; an IPv4/IPv6 address only that address (a CIDR range like 10.0.0.0/8 matches only its first
  address: httpx does not expand ranges); `host:port` that host on that port; `http://host` by scheme.
- `localhost` and 127.0.0.1 are not special: with HTTP_PROXY set and NO_PROXY not naming them, a local LM
  Studio is reached through the proxy.
- The most specific pattern wins: with a port before without, then the longer host, then the longer scheme.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# what httpx's URL drops as a scheme's default port (URL("http://h:80").port is None)
_DEFAULT_PORTS = {"ftp": 21, "http": 80, "https": 443, "ws": 80, "wss": 443}
PROXY_SCHEMES = ("http", "https")  # what http1 can speak to a proxy; httpx also knows socks5 (with socksio)


def environment_settings() -> dict[str, str]:
    """`urllib.request.getproxies()`, what httpx reads: scheme -> proxy URL, plus "no" for NO_PROXY.

    Elsewhere than macOS and Windows it reads only `*_proxy` variables, so when there are none the answer
    is known without importing urllib.request (2.5 MB and 19 ms in the tray process).
    """
    if sys.platform != "darwin" and os.name != "nt" and not any(k.lower().endswith("_proxy") for k in os.environ):
        return {}
    import urllib.request

    return dict(urllib.request.getproxies())


def environment_mounts(settings: Mapping[str, str]) -> dict[str, str | None]:
    """httpx's `get_environment_proxies()` for these settings: URL pattern -> proxy URL (None: direct)."""
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if settings.get(scheme):
            url = settings[scheme]
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for entry in (h.strip() for h in settings.get("no", "").split(",")):
        if entry == "*":
            return {}
        if not entry:
            continue
        if "://" in entry:
            mounts[entry] = None
        elif _is_ip(entry, ipaddress.IPv4Address):
            mounts[f"all://{entry}"] = None
        elif _is_ip(entry, ipaddress.IPv6Address):
            mounts[f"all://[{entry}]"] = None
        elif entry.lower() == "localhost":
            mounts[f"all://{entry}"] = None
        else:
            mounts[f"all://*{entry}"] = None
    return mounts


def _is_ip(entry: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(entry.split("/")[0])  # "10.0.0.0/8" counts as an address (its first one), as in httpx
    except ValueError:
        return False
    return True


def _host(host: str) -> str:
    """A host as httpx compares it: lower case, international names in their ASCII (IDNA) form."""
    host = host.lower()
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # not a name IDNA can spell: compared as it is
            host = host.encode("idna").decode("ascii")
    return host


def _port(scheme: str, port: int | None) -> int | None:
    return None if port is not None and _DEFAULT_PORTS.get(scheme) == port else port


@dataclass(frozen=True)
class _Pattern:
    """httpx's URLPattern: scheme ("" = any), host ("" = any; `*x` = x and its subdomains), port."""

    scheme: str
    host: str
    port: int | None
    regex: re.Pattern[str] | None

    @classmethod
    def parse(cls, pattern: str) -> _Pattern:
        """ValueError for what httpx's URL would refuse to parse as well."""
        parts = urlsplit(pattern)
        scheme = parts.scheme.lower()
        host = _host(parts.hostname or "")
        port = _port(scheme, parts.port)
        host = "" if host == "*" else host
        if not host:
            regex = None
        elif host.startswith("*."):
            regex = re.compile(rf"^.+\.{re.escape(host[2:])}$")
        elif host.startswith("*"):
            regex = re.compile(rf"^(.+\.)?{re.escape(host[1:])}$")
        else:
            regex = re.compile(rf"^{re.escape(host)}$")
        return cls("" if scheme == "all" else scheme, host, port, regex)

    @property
    def priority(self) -> tuple[int, int, int]:
        return (0 if self.port is not None else 1, -len(self.host), -len(self.scheme))

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if self.host and self.regex is not None and not self.regex.match(host):
            return False
        return self.port is None or self.port == port


@dataclass(frozen=True)
class Proxy:
    """A proxy to send requests through. `url` never contains the credentials (it goes into messages)."""

    scheme: str
    host: str
    port: int
    url: str
    authorization: str | None = None  # the Proxy-Authorization value, from user:password in the proxy URL

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """The proxy of a proxy URL: credentials move into `authorization`, a missing port becomes the scheme's
        default."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = _host(parts.hostname or "")
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        shown = f"[{host}]" if ":" in host else host
        authorization = None
        if parts.username or parts.password:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        return cls(scheme, host, port, f"{scheme}://{shown}:{port}", authorization)

    @property
    def usable(self) -> bool:
        """Whether `http1` can speak to this proxy: http:// or https://, with a host."""
        return self.scheme in PROXY_SCHEMES and bool(self.host)


class ProxyRules:
    """The proxy for each URL, decided like httpx does from the same settings."""

    def __init__(self, mounts: Mapping[str, str | None]) -> None:
        rules: list[tuple[_Pattern, Proxy | None]] = []
        for pattern, url in mounts.items():
            try:
                rules.append((_Pattern.parse(pattern), None if url is None else Proxy.parse(url)))
            except ValueError:
                continue  # httpx would refuse to start at all; here the entry is only skipped
        rules.sort(key=lambda rule: rule[0].priority)  # stable: equal priority keeps the settings' order
        self._rules = tuple(rules)

    @classmethod
    def from_environment(cls, settings: Callable[[], Mapping[str, str]] = environment_settings) -> ProxyRules:
        """The rules for the environment's proxy settings (`environment_settings`), as an httpx client made now would
        apply them."""
        return cls(environment_mounts(settings()))

    def __bool__(self) -> bool:
        return any(proxy is not None for _, proxy in self._rules)

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a request to scheme://host:port, or None to connect directly."""
        scheme = scheme.lower()
        normalized = _host(host)
        effective = _port(scheme, port)
        for pattern, proxy in self._rules:
            if pattern.matches(scheme, normalized, effective):
                return proxy
        return None
