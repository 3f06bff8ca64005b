"""``nats://`` log locations, log names, and the subjects and names a log uses on the server.

A location is ``nats://[user:pass@|token@]host[:port][,host[:port]...]/NAME``
(``tls://`` for TLS). Several hosts name the nodes of one cluster, so that a
client can fail over. Credentials are kept apart from the server URLs handed to
the client, and ``display`` never shows a password or token.

Log names are restricted to ``[A-Za-z0-9_-]`` (at most 64 characters) rather
than encoded: the name is then, unchanged, the JetStream stream's name, a
subject token, and part of the KV bucket names, which allow no more than
that (bucket names not even ``=``), and it reads the same in the server's own
tools. Event stream names (any text) are carried in subjects with a reversible
token encoding: ``[A-Za-z0-9_-]`` stays, every other UTF-8 byte becomes ``=XX``
(upper-case hex), the empty string is ``=``. Tokens then never hold ``.``,
``*``, ``>``, white space or control characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from ...errors import UsageError

SCHEMES = ("nats", "tls")
DEFAULT_PORT = 4222
MAX_NAME = 64
SUBJECT_ROOT = "evlog"
# KV buckets of a log, by purpose: their names are evlog_<log name>_<purpose>.
BUCKET_PURPOSES = ("snapshots", "projections", "groups", "meta", "ids")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPE = {byte: (chr(byte) if byte in _PLAIN else f"={byte:02X}") for byte in range(256)}
_TOKEN = re.compile(r"(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+")


def is_nats_location(text: str) -> bool:
    """Whether ``--log`` text names a NATS log (``nats://`` or ``tls://``) rather than a local path."""
    return text.partition("://")[0].lower() in SCHEMES and "://" in text


@dataclass(frozen=True)
class NatsLocation:
    """A parsed ``nats://`` location: the servers to try, credentials, and the log's name."""

    servers: tuple[str, ...]
    name: str
    tls: bool = False
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """The location as users may see it in messages: no password, no token."""
        auth = f"{self.user}@" if self.user is not None else ("***@" if self.token is not None else "")
        scheme = "tls" if self.tls else "nats"
        hosts = ",".join(server.partition("://")[2] for server in self.servers)
        return f"{scheme}://{auth}{hosts}/{self.name}"

    @property
    def stream_name(self) -> str:
        """The JetStream stream that holds the log's events."""
        return stream_name(self.name)


def parse_location(text: str) -> NatsLocation:
    """Parse ``nats://…/NAME`` or ``tls://…/NAME``; UsageError says what is wrong and what to write."""
    example = "write nats://[user:password@]host[:port]/NAME"
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise UsageError(f"--log {text!r} is not a NATS location: {example} (or tls://…)")
    if any(char in rest for char in "?#"):
        raise UsageError(f"--log {_hide(text)!r}: a NATS location takes no '?' or '#' part; {example}")
    authority, slash, path = rest.partition("/")
    if not slash or not path:
        raise UsageError(f"--log {_hide(text)!r} names no log: add /NAME after the host, e.g. nats://127.0.0.1:4222/shop")
    user = password = token = None
    if "@" in authority:
        credentials, _, authority = authority.rpartition("@")
        name_part, colon, secret = credentials.partition(":")
        if colon:
            user, password = unquote(name_part), unquote(secret)
            if not user:
                raise UsageError(f"--log {_hide(text)!r}: the user name before ':' is empty")
        else:
            token = unquote(name_part)
            if not token:
                raise UsageError(f"--log {_hide(text)!r}: the token before '@' is empty")
    if not authority:
        raise UsageError(f"--log {_hide(text)!r} names no host; {example}")
    tls = scheme.lower() == "tls"
    servers = tuple(_server(host_port, tls, text) for host_port in authority.split(","))
    check_log_name(path, where=f"--log {_hide(text)!r}")
    return NatsLocation(servers, path, tls, user, password, token)


def _hide(text: str) -> str:
    """The location text with anything before '@' (credentials) masked, for messages."""
    scheme, sep, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def _server(host_port: str, tls: bool, text: str) -> str:
    if host_port.startswith("["):  # [IPv6]:port
        host, bracket, tail = host_port[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise UsageError(f"--log {_hide(text)!r}: {host_port!r} is not [address]:port")
        host, port_text = f"[{host}]", tail[1:]
    else:
        host, _, port_text = host_port.partition(":")
    if not host or host == "[]":
        raise UsageError(f"--log {_hide(text)!r}: a host name is empty (between ',' or before ':')")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"--log {_hide(text)!r}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return f"{'tls' if tls else 'nats'}://{host}:{port}"


def check_log_name(name: str, *, where: str = "log name") -> str:
    """Return ``name`` if it can name a log on a NATS server, else UsageError saying the rule."""
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise UsageError(
            f"{where}: log name {name!r} is not allowed: use 1 to {MAX_NAME} letters, digits, '_' or '-' "
            "(it becomes the JetStream stream's name)"
        )
    if name.startswith(("KV_", "OBJ_")):
        raise UsageError(f"{where}: log name {name!r} is not allowed: names starting KV_ or OBJ_ are the "
                         "server's key-value and object stores")
    return name


def stream_name(log_name: str) -> str:
    """The JetStream stream of a log: its name, unchanged (the name rules keep it valid)."""
    return check_log_name(log_name)


def encode_token(text: str) -> str:
    """A subject token for any text: ``[A-Za-z0-9_-]`` kept, other UTF-8 bytes as ``=XX``, '' as ``=``."""
    if not text:
        return "="
    if _NAME.fullmatch(text):
        return text  # the common case, without a per-byte loop
    return "".join([_ESCAPE[byte] for byte in text.encode()])


def decode_token(token: str) -> str:
    """The text a token encodes; ValueError for a token :func:`encode_token` cannot have made."""
    if token == "=":
        return ""
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"not an encoded subject token: {token!r}")
    if "=" not in token:
        return token
    out = bytearray()
    index = 0
    while index < len(token):
        if token[index] == "=":
            out.append(int(token[index + 1:index + 3], 16))
            index += 3
        else:
            out.append(ord(token[index]))
            index += 1
    try:
        text = out.decode()
    except UnicodeDecodeError:
        raise ValueError(f"not an encoded subject token (not UTF-8): {token!r}") from None
    if encode_token(text) != token:
        raise ValueError(f"not the canonical encoding of its text: token {token!r}")
    return text


def event_subject(log_name: str, stream: str | None) -> str:
    """The subject of an event: ``evlog.<log>.s.<enc stream>``, or ``evlog.<log>.n`` without a stream."""
    if stream is None:
        return f"{SUBJECT_ROOT}.{log_name}.n"
    return f"{SUBJECT_ROOT}.{log_name}.s.{encode_token(stream)}"


def stream_of_subject(log_name: str, subject: str) -> str | None:
    """The event stream a subject of this log carries (None: no stream); ValueError if not one of ours."""
    prefix = f"{SUBJECT_ROOT}.{log_name}."
    if subject == prefix + "n":
        return None
    if subject.startswith(prefix + "s."):
        return decode_token(subject[len(prefix) + 2:])
    raise ValueError(f"subject {subject!r} is not an event subject of log {log_name!r}")


def log_subjects(log_name: str) -> str:
    """The wildcard that the log's JetStream stream captures."""
    return f"{SUBJECT_ROOT}.{log_name}.>"


def streams_filter(log_name: str) -> str:
    """A subject filter matching every event that has a stream (for per-subject counts)."""
    return f"{SUBJECT_ROOT}.{log_name}.s.*"


def bucket_name(log_name: str, purpose: str) -> str:
    """The KV bucket of a log for one purpose (snapshots, projections, groups, …)."""
    if purpose not in BUCKET_PURPOSES:
        raise ValueError(f"unknown bucket purpose {purpose!r}")
    return f"evlog_{check_log_name(log_name)}_{purpose}"


def kv_key(*parts: str) -> str:
    """A KV key from text parts: each encoded as a subject token, joined by '.' (matches ``[-/_=.a-zA-Z0-9]+``).

    Token-aligned prefixes of such keys can be listed with a server-side filter (``part.>``).
    """
    if not parts:
        raise ValueError("a key needs at least one part")
    return ".".join(encode_token(part) for part in parts)


def kv_key_parts(key: str) -> list[str]:
    """The text parts of a key made by :func:`kv_key`; ValueError for a key it cannot have made."""
    return [decode_token(token) for token in key.split(".")]
