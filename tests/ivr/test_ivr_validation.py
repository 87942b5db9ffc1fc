"""A flow author's mistakes, each reported with file, line, column, node and what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest

from asr.nlu import EntityKind, load_config
from ivr_flows import FlowError, FlowInvalid, check_flow, parse_flow
from ivr_flows.expressions import ExpressionError, Template, compile_condition
from ivr_flows.nodes import ENTITY_KINDS, BusinessHoursNode
from tests.ivr.conftest import MAIN_YAML


def errors_of(text: str, **kwargs: object) -> list[FlowError]:
    flow, errors = check_flow(text, "test.yaml", **kwargs)  # type: ignore[arg-type]
    assert flow is None and errors
    return errors


def only(errors: list[FlowError]) -> FlowError:
    assert len(errors) == 1, [str(error) for error in errors]
    return errors[0]


GOOD = """\
start: hello
nodes:
  hello:
    type: play
    prompt: 您好
    next: menu
  menu:
    type: menu
    prompt: 请按1
    choices: {1: bye}
    on_failure: bye
  bye:
    type: hangup
"""


def test_the_shipped_flow_is_valid_against_the_nlu_intents() -> None:
    flow, errors = check_flow(MAIN_YAML, "main.yaml", known_intents=load_config().intents)
    assert errors == [] and flow is not None
    assert flow.start == "office_hours" and "after_sales_queue" in flow.nodes


def test_entity_kinds_are_those_of_the_nlu() -> None:
    assert set(ENTITY_KINDS) == {kind.value for kind in EntityKind}


def test_a_good_flow_parses() -> None:
    flow = parse_flow(GOOD)
    assert list(flow.nodes) == ["hello", "menu", "bye"] and flow.variables["language"] == "zh"


def test_yaml_syntax_error_has_its_line() -> None:
    error = only(errors_of(GOOD.replace("choices: {1: bye}", "choices: {1: bye")))
    assert (error.line, error.code) == (11, "yaml_syntax") and error.file == "test.yaml"


def test_duplicate_node_ids_are_refused_not_overwritten() -> None:
    error = only(errors_of(GOOD + "  hello:\n    type: hangup\n"))
    assert (error.line, error.code) == (14, "duplicate_key")
    assert "first defined at line 3" in error.message


def test_unknown_node_type() -> None:
    error = only(errors_of(GOOD.replace("type: hangup", "type: hangpu")))
    assert (error.line, error.column, error.node, error.code) == (13, 11, "bye", "unknown_node_type")
    assert "did you mean 'hangup'" in error.message


def test_missing_field() -> None:
    error = only(errors_of(GOOD.replace("    next: menu\n", "")))
    assert (error.line, error.node, error.code) == (3, "hello", "missing_field")
    assert error.message == "missing field 'next'"


def test_unknown_field() -> None:
    error = only(errors_of(GOOD.replace("    next: menu\n", "    next: menu\n    nxet: menu\n")))
    assert (error.line, error.node, error.code) == (7, "hello", "unknown_field")


def test_goto_to_a_missing_node() -> None:
    error = only(errors_of(GOOD.replace("choices: {1: bye}", "choices: {1: bye, 2: byebye}")))
    assert (error.line, error.column, error.node, error.code) == (10, 26, "menu", "missing_node")
    assert error.message == "goes to 'byebye', which is not a node — did you mean 'bye'?"


def test_start_at_a_missing_node() -> None:
    error = only(errors_of(GOOD.replace("start: hello", "start: helo")))
    assert (error.line, error.node, error.code) == (1, None, "missing_node")


def test_unreachable_node() -> None:
    error = only(errors_of(GOOD + "  orphan:\n    type: hangup\n"))
    assert (error.line, error.column, error.node, error.code) == (14, 3, "orphan", "unreachable_node")


def test_a_loop_without_any_input_node_is_refused() -> None:
    text = GOOD.replace("choices: {1: bye}", "choices: {1: spin}") + (
        "  spin:\n    type: set\n    values: {n: 1}\n    next: again\n"
        "  again:\n    type: play\n    prompt: again\n    next: spin\n"
    )
    error = only(errors_of(text))
    assert (error.line, error.node, error.code) == (14, "spin", "endless_loop")
    assert error.message.endswith("spin → again → spin")


def test_a_loop_through_a_menu_is_fine() -> None:
    parse_flow(GOOD.replace("choices: {1: bye}", "choices: {1: bye, 2: hello}"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "greater than 0"),
        ("0", "greater than 0"),
        ("600", "less than or equal to 60"),
        ('"5s"', "number"),
    ],
)
def test_bad_timeouts(value: str, message: str) -> None:
    error = only(errors_of(GOOD.replace("    on_failure: bye", f"    timeout: {value}\n    on_failure: bye")))
    assert (error.line, error.node, error.code) == (11, "menu", "bad_value")
    assert error.message.startswith("timeout: ") and message in error.message


def test_unknown_variable_in_a_condition() -> None:
    text = GOOD.replace("choices: {1: bye}", "choices: {1: check}") + (
        "  check:\n    type: condition\n    cases:\n      - when: ordr_status == 'shipped'\n"
        "        goto: bye\n    else: bye\n"
    )
    error = only(errors_of(text.replace("start: hello", "start: hello\nvariables: {order_status: ''}")))
    assert (error.line, error.node, error.code) == (18, "check", "unknown_variable")
    assert "unknown variable 'ordr_status' — did you mean 'order_status'?" in error.message


def test_unknown_variable_in_a_prompt() -> None:
    error = only(errors_of(GOOD.replace("prompt: 您好", "prompt: 您好，{nmae}")))
    assert (error.line, error.node, error.code) == (5, "hello", "unknown_variable")


def test_a_condition_that_is_not_an_expression() -> None:
    text = GOOD.replace("choices: {1: bye}", "choices: {1: check}") + (
        "  check:\n    type: condition\n    cases:\n      - when: __import__('os').system('x')\n"
        "        goto: bye\n    else: bye\n"
    )
    error = only(errors_of(text))
    assert (error.line, error.code) == (17, "bad_expression") and "not allowed" in error.message


def test_unknown_intent_in_a_branch() -> None:
    text = GOOD.replace("choices: {1: bye}", "choices: {1: understand}") + (
        "  understand:\n    type: intent\n    branches: {return_requst: bye}\n    default: bye\n"
    )
    error = only(errors_of(text, known_intents=load_config().intents))
    assert (error.line, error.node, error.code) == (16, "understand", "unknown_intent")
    assert "did you mean 'return_request'" in error.message


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = GOOD.replace("type: hangup", "type: hangpu").replace("    next: menu\n", "")
    errors = errors_of(text)
    assert [(error.line, error.code) for error in errors] == [(3, "missing_field"), (12, "unknown_node_type")]
    with pytest.raises(FlowInvalid) as raised:
        parse_flow(text, "test.yaml")
    assert raised.value.to_problem()["errors"][0]["line"] == 3
    assert str(raised.value.detail).startswith("test.yaml:3:")


def test_a_document_that_is_not_a_flow() -> None:
    assert only(errors_of("- just\n- a list\n")).code == "not_a_mapping"
    assert only(errors_of("a: &a [*a]\n")).code in ("too_large", "yaml_syntax")


def test_alias_bombs_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(6)
    )
    assert only(errors_of(bomb)).code == "too_large"


# ------------------------------------------------------------------------------- the small languages


def test_conditions_evaluate_safely() -> None:
    variables = {"digits": "3", "status": "shipped", "vip": True, "n": 2}
    assert compile_condition("digits == 3 and status in ['shipped', 'delivered']").evaluate(variables)
    assert compile_condition("not vip or n >= 2").evaluate(variables)
    assert not compile_condition("status < 3").evaluate(variables)  # a string and a number: false, no error
    assert compile_condition("missing == null").evaluate(variables)
    with pytest.raises(ExpressionError):
        compile_condition("open('x')")
    with pytest.raises(ExpressionError):
        compile_condition("digits.upper() == 'A'")


def test_templates() -> None:
    template = Template("订单{order_number}，{{不变}}")
    assert template.names == ("order_number",)
    assert template.render({"order_number": "12345"}) == "订单12345，{不变}"
    with pytest.raises(ExpressionError):
        _ = Template("broken {order").names


def test_business_hours_with_holidays_special_days_and_timezone() -> None:
    node = BusinessHoursNode.model_validate(
        {
            "type": "business_hours",
            "timezone": "Asia/Shanghai",
            "hours": {"mon-fri": "09:00-12:00, 13:00-18:00", "sat": "closed"},
            "holidays": ["2026-10-01"],
            "special_days": {"2026-10-10": "10:00-16:00"},
            "open": "a",
            "closed": "b",
        }
    )
    assert node.ranges(dt.date(2026, 11, 25)) == ((dt.time(9), dt.time(12)), (dt.time(13), dt.time(18)))
    assert node.ranges(dt.date(2026, 11, 28)) == ()  # Saturday
    assert node.ranges(dt.date(2026, 11, 29)) == ()  # Sunday: not listed, so closed
    assert node.ranges(dt.date(2026, 10, 10)) == ((dt.time(10), dt.time(16)),)  # a working Saturday
    for bad in (
        {"timezone": "Mars/Olympus"},
        {"hours": {"mon": "9-18"}},
        {"hours": {"fri-mon": "09:00-18:00"}},
    ):
        with pytest.raises(ValueError):
            BusinessHoursNode.model_validate(
                {"type": "business_hours", "hours": {"mon": "09:00-18:00"}, "open": "a", "closed": "b", **bad}
            )
