"""The wallboard's figures and alert rules as pure functions of contacts, agents and bot outcomes."""

from __future__ import annotations

import datetime as dt

from agent_desktop.models import (
    Contact,
    ContactKind,
    ContactStatus,
    QueueConfig,
    WallboardConfig,
)
from agent_desktop.wallboard import alert_conditions, bot_deflection, queue_board

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
QUEUE = QueueConfig(id="after_sales", name="售后")


def contact(
    status: ContactStatus,
    *,
    entered_ago: float,
    answered_after: float | None = None,
    ended_ago: float | None = None,
    queue: str = "after_sales",
) -> Contact:
    entered = NOW - dt.timedelta(seconds=entered_ago)
    return Contact(
        id=f"c{entered_ago}-{status.value}",
        queue=queue,
        kind=ContactKind.call,
        status=status,
        customer_id="cust",
        conversation_id=None,
        external_ref=None,
        priority="normal",
        skills={},
        context={},
        enqueued_at=entered,
        queue_entered_at=entered,
        connected_at=entered + dt.timedelta(seconds=answered_after) if answered_after is not None else None,
        ended_at=NOW - dt.timedelta(seconds=ended_ago) if ended_ago is not None else None,
    )


def test_service_level_counts_answers_within_the_threshold_over_answered_plus_abandoned() -> None:
    contacts = [
        contact(ContactStatus.ended, entered_ago=600, answered_after=5, ended_ago=300),
        contact(ContactStatus.ended, entered_ago=500, answered_after=19.5, ended_ago=200),
        contact(ContactStatus.connected, entered_ago=100, answered_after=45),
        contact(ContactStatus.withdrawn, entered_ago=90, ended_ago=60),
        contact(ContactStatus.waiting, entered_ago=30),
        contact(ContactStatus.waiting, entered_ago=12),
        contact(ContactStatus.waiting, entered_ago=50, queue="other"),
    ]
    board = queue_board(QUEUE, contacts, NOW, WallboardConfig())
    assert (board.waiting, board.longest_wait_seconds) == (2, 30.0)
    assert (board.answered, board.abandoned, board.connected) == (3, 1, 1)
    assert board.service_level == 2 / 4
    assert board.asa_seconds == (5 + 19.5 + 45) / 3
    assert board.abandon_rate == 1 / 4


def test_the_threshold_and_the_window_are_configurable() -> None:
    contacts = [
        contact(ContactStatus.ended, entered_ago=7200, answered_after=5, ended_ago=7000),
        contact(ContactStatus.ended, entered_ago=100, answered_after=25, ended_ago=50),
    ]
    hourly = queue_board(QUEUE, contacts, NOW, WallboardConfig())
    assert (hourly.answered, hourly.service_level) == (1, 0.0)
    lenient = queue_board(
        QUEUE, contacts, NOW, WallboardConfig(sl_threshold_seconds=30, window_seconds=86_400)
    )
    assert (lenient.answered, lenient.service_level) == (2, 1.0)


def test_a_queue_without_contacts_has_no_rates_rather_than_zero() -> None:
    board = queue_board(QUEUE, [], NOW, WallboardConfig())
    assert (board.service_level, board.asa_seconds, board.abandon_rate) == (None, None, None)
    assert alert_conditions([board], bot_deflection([]), WallboardConfig()) == []


def test_bot_deflection_is_resolved_over_finished_bot_conversations() -> None:
    rate = bot_deflection(["resolved", "resolved", "handed_off", "resolved"])
    assert (rate.resolved, rate.handed_off, rate.rate) == (3, 1, 0.75)
    assert bot_deflection([]).rate is None
    # a visitor who gave up on the bot is not a success
    gave_up = bot_deflection(["resolved", "abandoned", "handed_off", "resolved"])
    assert (gave_up.rate, gave_up.abandoned) == (0.5, 1)


def test_alert_rules_fire_on_long_waits_low_service_level_and_low_bot_resolution() -> None:
    config = WallboardConfig(sl_target=0.8, max_wait_seconds=300, bot_resolution_min=0.7)
    slow = queue_board(
        QUEUE,
        [
            contact(ContactStatus.waiting, entered_ago=301),
            contact(ContactStatus.ended, entered_ago=400, answered_after=60, ended_ago=100),
        ],
        NOW,
        config,
    )
    held = alert_conditions([slow], bot_deflection(["resolved", "handed_off"]), config)
    assert {(c.rule, c.subject) for c in held} == {
        ("queue_wait", "after_sales"),
        ("service_level", "after_sales"),
        ("bot_resolution", "bot"),
    }
    fine = queue_board(QUEUE, [contact(ContactStatus.waiting, entered_ago=299)], NOW, config)
    assert alert_conditions([fine], bot_deflection(["resolved"] * 7 + ["handed_off"] * 3), config) == []


def test_the_outbound_queue_counts_its_calls_but_has_no_service_level_speed_of_answer_or_abandons() -> None:
    outbound = QueueConfig(id="outbound", name="外呼 Outbound calls")
    contacts = [
        contact(ContactStatus.connected, entered_ago=60, answered_after=0, queue="outbound"),
        contact(ContactStatus.ended, entered_ago=300, answered_after=0, ended_ago=200, queue="outbound"),
    ]
    board = queue_board(outbound, contacts, NOW, WallboardConfig())
    assert (board.answered, board.connected, board.waiting) == (2, 1, 0)
    assert (board.service_level, board.asa_seconds, board.abandon_rate) == (None, None, None)
    # so it never raises a service-level alert, however the target is set
    assert alert_conditions([board], bot_deflection([]), WallboardConfig(sl_target=1.0)) == []
