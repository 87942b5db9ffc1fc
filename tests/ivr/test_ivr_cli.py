"""``huiliu flows check`` and ``huiliu flows simulate`` as a flow author runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ivr_flows.service import SHIPPED_DIR

MAIN = SHIPPED_DIR / "main.yaml"
REPO = Path(__file__).resolve().parents[2]


def huiliu(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("HUILIU_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_check_accepts_the_shipped_flow() -> None:
    result = huiliu("flows", "check", str(MAIN))
    assert result.returncode == 0, result.stderr
    assert "main.yaml: ok (28 nodes, starts at office_hours)" in result.stdout


def test_check_names_file_line_and_node_of_an_error_and_exits_1(tmp_path: Path) -> None:
    shipped = MAIN.read_text(encoding="utf-8")
    cases = {
        "goto.yaml": (
            shipped.replace("      0: agent_queue\n", "      0: agent_queu\n"),
            "      0: agent_queu",
        ),
        "timeout.yaml": (
            shipped.replace("    timeout: 6\n    retries: 2\n", "    timeout: -6\n    retries: 2\n"),
            "    timeout: -6",
        ),
    }
    for name, (text, bad_line) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        line = text.splitlines().index(bad_line) + 1

        result = huiliu("flows", "check", str(path))
        assert result.returncode == 1, result.stdout
        [error] = [out for out in result.stderr.splitlines() if out.startswith(f"{name}:") and "node" in out]
        assert error.startswith(f"{name}:{line}:") and "node main_menu" in error, result.stderr
        assert f"{name}: 1 error(s)" in result.stderr
    assert "did you mean 'agent_queue'" in huiliu("flows", "check", str(tmp_path / "goto.yaml")).stderr


def test_check_of_a_missing_file_says_so(tmp_path: Path) -> None:
    result = huiliu("flows", "check", str(tmp_path / "nowhere.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_simulate_walks_the_menu_by_keys_and_prints_prompts_steps_and_the_path() -> None:
    script = "1\n\n\n12345#\n"  # after-sales, silent twice, then the order number by keys
    result = huiliu("flows", "simulate", str(MAIN), "--at", "2026-11-25T10:00+08:00", stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "♪ 您好，欢迎致电汇流客服。" in out
    assert '[3] main_menu (menu) ["1"]: chose 1 → after_sales' in out
    assert "⇢ queued in after_sales (skills after_sales, normal)" in out
    assert "path: office_hours → greeting → main_menu → after_sales → after_sales_queue" in out
    assert '"order_number": "12345"' in out


def test_simulate_understands_what_the_caller_says_and_opens_a_ticket() -> None:
    script = "1\n我要退货，订单号 12345\n"
    result = huiliu("flows", "simulate", str(MAIN), "--at", "2026-11-25T10:00+08:00", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "understand (intent)" in result.stdout and "intent return_request" in result.stdout
    assert "ticket: created T0001" in result.stdout
    assert "单号T0001" in result.stdout  # the prompt with the ticket number filled in


def test_simulate_follows_invalid_keys_silence_and_the_caller_hanging_up() -> None:
    script = "7\n\nhangup\n"
    result = huiliu("flows", "simulate", str(MAIN), "--at", "2026-11-25T10:00+08:00", stdin=script)
    out = result.stdout
    assert "♪ 输入有误，请重新选择。" in out and "♪ 没有收到您的选择。" in out
    assert "main_menu (menu)" in out and "hung_up" in out
    assert "outcome: hung_up" in out


def test_simulate_after_hours_goes_to_voicemail() -> None:
    result = huiliu("flows", "simulate", str(MAIN), "--at", "2026-11-25T23:30+08:00", stdin="")
    assert "office_hours (business_hours)" in result.stdout and ": closed → after_hours" in result.stdout
    assert "path: office_hours → after_hours → voicemail" in result.stdout
