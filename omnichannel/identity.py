"""Canonical identity values, so the same person is recognised whatever way they typed it."""

from __future__ import annotations

import re

import phonenumbers

from core.errors import Invalid
from omnichannel.models import Identity, IdentityKind

# Unquoted local parts only (RFC 5322 dot-atom; any letter, for internationalised addresses): no comma,
# angle bracket, quote or space, any of which could make one "address" name a second recipient.
_EMAIL_LOCAL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}")
_DOMAIN_LABEL = re.compile(r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?")
_WECHAT_ID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 for a number written any common way (``138 0013 8000``, ``+86 138…``, ``0086…``)."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise Invalid(f"not a phone number: {raw!r} ({exc})", code="invalid_phone") from None
    if not phonenumbers.is_possible_number(number):
        raise Invalid(f"not a possible phone number: {raw!r}", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """The address as one customer's key: trimmed and lower-cased (``Li.Na@Example.COM`` is
    ``li.na@example.com``); ``Invalid`` (``invalid_email``) unless it is one plain mailbox at a domain."""
    value = raw.strip().lower()
    local, at, domain = value.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or len(value) > 254
        or not _EMAIL_LOCAL.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        or len(labels[-1]) < 2
        or labels[-1].isdigit()
    ):
        raise Invalid(f"not an email address: {raw!r}", code="invalid_email")
    return value


def normalize(identity: Identity, default_region: str = "CN") -> Identity:
    """The canonical form of ``identity``; ``Invalid`` (with code) when it cannot be one."""
    value = identity.value.strip()
    match identity.kind:
        case IdentityKind.phone:
            value = normalize_phone(value, default_region)
        case IdentityKind.email:
            value = normalize_email(value)
        case IdentityKind.wechat_openid | IdentityKind.wechat_unionid:
            if not _WECHAT_ID.match(value):
                raise Invalid(f"not a WeChat id: {identity.value!r}", code="invalid_wechat_id")
        case IdentityKind.web_visitor:
            if not _VISITOR_ID.match(value):
                raise Invalid(f"not a web visitor id: {identity.value!r}", code="invalid_visitor_id")
        case IdentityKind.crm_id:
            if not value or not value.isprintable():
                raise Invalid(f"not a CRM id: {identity.value!r}", code="invalid_crm_id")
    return Identity(kind=identity.kind, value=value)
