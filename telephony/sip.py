"""Reading the few things we need from a SIP request's text: who called, what they dialed."""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from core.errors import Invalid
from omnichannel import normalize_phone

_URI = re.compile(r"<?(?:sips?|tel):(?:(?P<user>[^@;>]*)@)?(?P<host>[^;>?]+)", re.IGNORECASE)
_COMPACT = {"f": "from", "t": "to", "i": "call-id", "m": "contact"}
ANONYMOUS_USERS = frozenset({"", "anonymous", "unknown", "restricted", "private", "unavailable"})


@dataclass(frozen=True)
class InviteParties:
    caller_user: str  # P-Asserted-Identity user, else From user
    caller_host: str
    called: str  # Request-URI user, else To user


def uri_user(uri: str) -> tuple[str, str]:
    """``(user, host)`` of the first SIP/tel URI in ``uri`` (a header value or a bare URI)."""
    match = _URI.search(uri)
    if match is None:
        return "", ""
    user = match.group("user") or ""
    if uri.lower().lstrip("<").startswith("tel:"):
        user, host = match.group("host"), ""
    else:
        host = match.group("host")
    return user.split(";", 1)[0], host.split(":", 1)[0]


def _headers(message: str) -> tuple[str, dict[str, str]]:
    head = message.split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    lines = head.split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        headers.setdefault(key, value.strip())
    return lines[0], headers


def invite_parties(message: str) -> InviteParties:
    request_line, headers = _headers(message)
    parts = request_line.split()
    request_user = uri_user(parts[1])[0] if len(parts) >= 2 else ""
    caller_user, caller_host = uri_user(headers.get("p-asserted-identity") or headers.get("from", ""))
    called = request_user or uri_user(headers.get("to", ""))[0]
    return InviteParties(caller_user, caller_host, called)


def display_number(user: str, default_region: str) -> str:
    """E.164 when ``user`` is a phone number, else ``user`` unchanged (a SIP user or extension)."""
    try:
        return normalize_phone(user, default_region)
    except Invalid:
        return user


_DIALABLE = re.compile(r"^\+?[0-9 ().-]{3,40}$")


def dialable_number(raw: str, default_region: str) -> str:
    """The E.164 form of a phone number an agent typed to call out (``138 0013 8000``, ``+86 10 6552 9988``,
    ``0086…``); ``Invalid`` (code ``invalid_number``) for anything that is not a valid phone number of a
    real numbering plan — letters, SIP URIs, short codes and extensions included."""
    text = raw.strip()
    if not _DIALABLE.match(text):
        raise Invalid(
            f"not a phone number: {raw!r} (digits, with an optional leading +, spaces, dashes or brackets)",
            code="invalid_number",
        )
    try:
        e164 = normalize_phone(text, default_region)
        valid = phonenumbers.is_valid_number(phonenumbers.parse(e164))
    except (Invalid, phonenumbers.NumberParseException):
        valid = False
    if not valid:
        raise Invalid(
            f"{raw!r} is not a valid phone number (without a country code it is read as {default_region})",
            code="invalid_number",
        )
    return e164


@dataclass(frozen=True)
class Dialog:
    """What it takes to end an answered inbound call from outside its worker (the node-lost sweeper)."""

    call_id: str
    local: str  # our To header from the 200 OK, with our tag: the From of a BYE we send
    remote: str  # the caller's From header, with their tag: the To of our BYE
    target: str  # the caller's Contact URI: the BYE's Request-URI
    routes: tuple[str, ...]  # the INVITE's Record-Route values, in order: our route set


def _all_values(message: str, name: str) -> list[str]:
    head = message.split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    values: list[str] = []
    for line in head.split("\n")[1:]:
        header, sep, value = line.partition(":")
        if sep and _COMPACT.get(header.strip().lower(), header.strip().lower()) == name:
            values.extend(part.strip() for part in re.split(r",(?=\s*<)", value) if part.strip())
    return values


def uas_dialog(invite: str, response: str) -> Dialog | None:
    """The dialog an INVITE we received and the 200 OK we sent for it established."""
    _, request = _headers(invite)
    _, answer = _headers(response)
    contact = re.search(r"<([^>]+)>", request.get("contact", "")) or re.search(
        r"(\S+)", request.get("contact", "")
    )
    if not contact or ";tag=" not in answer.get("to", "") or not request.get("call-id"):
        return None
    return Dialog(
        call_id=request["call-id"],
        local=answer["to"],
        remote=request.get("from", ""),
        target=contact.group(1),
        routes=tuple(_all_values(invite, "record-route")),
    )


def hop(uri: str) -> tuple[str, int]:
    """Host and port a request for ``uri`` (a Route or Request-URI) is sent to over UDP."""
    match = re.search(r"sips?:(?:[^@;>]*@)?(\[[^\]]+\]|[^:;>]+)(?::(\d+))?", uri)
    if match is None:
        raise ValueError(f"not a SIP URI: {uri}")
    return match.group(1).strip("[]"), int(match.group(2) or 5060)


def bye_request(
    dialog: Dialog, via: tuple[str, int], branch: str, cseq: int
) -> tuple[bytes, tuple[str, int]]:
    """A BYE for ``dialog`` sent from ``via`` (UDP), and where to send it (first route, else the target)."""
    lines = [
        f"BYE {dialog.target} SIP/2.0",
        f"Via: SIP/2.0/UDP {via[0]}:{via[1]};rport;branch=z9hG4bK{branch}",
        *(f"Route: {route}" for route in dialog.routes),
        f"From: {dialog.local}",
        f"To: {dialog.remote}",
        f"Call-ID: {dialog.call_id}",
        f"CSeq: {cseq} BYE",
        "Max-Forwards: 70",
        'Reason: Q.850;cause=41;text="node_lost"',
        "Content-Length: 0",
    ]
    destination = hop(dialog.routes[0] if dialog.routes else dialog.target)
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), destination
