"""Credentials taken out of a URL before it is shown, logged, cached, stored or exported.

One redactor for every URL Quorum holds: LLM servers (`engine/backends/`), the Redis
cache and history (`engine/store/`). A URL may carry a secret in two places:
- its user part: `user:password@`, or a bare `token@` (httpx sends that as Basic auth);
  it becomes `***@`. In a Redis URL (`redis://`, `rediss://`, `unix://`) a user part
  without a password is only the ACL user's name: it is dropped, not marked;
- a `password=` query parameter (redis-py reads one): its value becomes `***`.
A URL with neither is returned as written.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
# Schemes whose URLs name a user apart from its password (redis-py's URL forms).
_USER_IS_A_NAME = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """`url` without its credentials. Raises ValueError where `urlsplit` cannot parse it
    (an unclosed IPv6 bracket); its message does not quote the URL."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    has_password = any(name == "password" for name, _ in pairs)
    if not at and not has_password:
        return url
    netloc = hostport
    if at and (":" in userinfo or parts.scheme not in _USER_IS_A_NAME):
        netloc = f"{MASK}@{hostport}"
    query = parts.query
    if has_password:
        query = urlencode([(k, MASK if k == "password" else v) for k, v in pairs])
    # Built by hand: urlunsplit drops the "//" of unix:///path (an empty host).
    rest = (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{parts.path}{rest}"
