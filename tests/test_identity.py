"""The same person is recognised however they wrote their phone number or email."""

from __future__ import annotations

import pytest

from core.errors import Invalid
from omnichannel import Identity, IdentityKind, normalize


@pytest.mark.parametrize(
    "written",
    ["13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000", "+8613800138000"],
)
def test_chinese_mobile_written_any_way_is_one_e164_number(written: str) -> None:
    assert normalize(Identity(kind=IdentityKind.phone, value=written)).value == "+8613800138000"


def test_number_without_country_uses_the_configured_region() -> None:
    identity = Identity(kind=IdentityKind.phone, value="(415) 555-2671")
    assert normalize(identity, "US").value == "+14155552671"


@pytest.mark.parametrize("bad", ["hello", "12", "+86 1"])
def test_nonsense_phone_is_refused_with_a_code(bad: str) -> None:
    with pytest.raises(Invalid) as caught:
        normalize(Identity(kind=IdentityKind.phone, value=bad))
    assert caught.value.code == "invalid_phone"


def test_email_is_case_insensitive() -> None:
    assert (
        normalize(Identity(kind=IdentityKind.email, value=" Li.Na@Example.COM ")).value == "li.na@example.com"
    )


def test_bad_email_and_wechat_id_are_refused() -> None:
    with pytest.raises(Invalid, match="email"):
        normalize(Identity(kind=IdentityKind.email, value="not-an-email"))
    with pytest.raises(Invalid, match="WeChat"):
        normalize(Identity(kind=IdentityKind.wechat_openid, value="o<script>"))


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("o'brien+shop@Mail.Example.org", "o'brien+shop@mail.example.org"),
        ("张三@例子.中国", "张三@例子.中国"),
        ("li@shop.xn--fiqs8s", "li@shop.xn--fiqs8s"),
    ],
)
def test_plain_mailboxes_are_kept_as_written_in_lower_case(written: str, canonical: str) -> None:
    assert normalize(Identity(kind=IdentityKind.email, value=written)).value == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "a,b@example.com",  # a comma in To: is a second recipient
        "Li <li@example.com>",
        "li@example",
        "li@example.c",
        "li..na@example.com",
        "li@-example.com",
        "li@example..com",
        "li@10.0.0.1",
        "li\n@example.com",
        "li@x@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_an_email_that_is_not_one_plain_mailbox_is_refused(bad: str) -> None:
    with pytest.raises(Invalid) as caught:
        normalize(Identity(kind=IdentityKind.email, value=bad))
    assert caught.value.code == "invalid_email"
