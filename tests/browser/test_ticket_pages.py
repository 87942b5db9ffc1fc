"""Ticket pages in headless chromium: the customer's progress page on a phone-sized screen (the ticket's
hops in its language, no login; a changed link shows only that it is not valid) and the supervisors' report
page with its charts."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.conftest import ApiClient
from tests.tickets.test_tickets_progress_http import open_ticket


async def test_the_customer_follows_their_exchange_on_a_phone(page: Page, agent: ApiClient) -> None:
    ticket, token = await open_ticket(
        agent,
        intent="exchange_request",
        entities={"order_number": "88"},
        facts={"paid": True, "stock": "out_of_stock"},
    )
    await page.set_viewport_size({"width": 375, "height": 740})
    response = await page.goto(f"/p/{token}")
    assert response is not None and response.status == 200
    await expect(page.locator("h1")).to_contain_text(ticket["number"])
    await expect(page.locator("#status")).to_contain_text("已受理")
    steps = page.locator("#steps li")
    await expect(steps).to_have_count(1)
    await expect(steps.first).to_contain_text("售后审核")
    await expect(steps.first).to_contain_text("进行中")
    await expect(page.locator("#events")).to_contain_text("工单已受理")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"

    # The assignee finishes the review: three departments start at once, and the page shows them.
    status, done, _ = await agent.request(
        "POST", f"/api/tickets/{ticket['id']}/workflow/steps/review/complete", json={"note": "内部：同意"}
    )
    assert status == 200, done
    await page.reload()
    await expect(steps).to_have_count(4)
    await expect(page.locator("#steps li.active")).to_have_count(3)
    await expect(page.locator("#steps")).to_contain_text("仓库补货")
    await expect(page.locator("body")).not_to_contain_text("内部：同意")

    await page.get_by_role("link", name="English").click()
    await expect(page.locator("h1")).to_contain_text("Ticket progress")
    await expect(page.locator("#steps")).to_contain_text("Logistics picks up the old item")


async def test_a_changed_link_shows_no_ticket(page: Page, agent: ApiClient) -> None:
    ticket, token = await open_ticket(agent)
    ticket_id, expires, signature = token.split(".")
    response = await page.goto(f"/p/{ticket_id}.{int(expires) + 86400}.{signature}")
    assert response is not None and response.status == 403
    await expect(page.locator("#problem")).to_contain_text("链接无效")
    assert await page.locator("#steps").count() == 0
    await expect(page.locator("body")).not_to_contain_text(ticket["number"])


async def test_a_supervisor_reads_the_reports_with_charts(
    page: Page, agent: ApiClient, supervisor: ApiClient
) -> None:
    await open_ticket(agent)
    await page.goto("/supervisor/reports")
    await page.fill("input[name=username]", "supervisor")
    await page.fill("input[name=password]", "supervisor-demo")
    await page.click("form.login button")
    await expect(page.locator("#kpis")).to_contain_text("工单数")
    await expect(page.locator("#kpis .kpi").first).to_contain_text("1")
    await expect(page.locator("#intents svg rect.bar")).to_have_count(1)
    await expect(page.locator("#intents")).to_contain_text("return_request")
    await expect(page.locator("#sla svg")).to_have_count(1)
    async with page.expect_download() as download:
        await page.click("#csv")
    assert (await download.value).suggested_filename.endswith(".csv")
    await page.click("#lang")
    await expect(page.locator("#kpis")).to_contain_text("Tickets")


async def test_an_agent_is_told_the_reports_are_for_supervisors(page: Page) -> None:
    await page.goto("/supervisor/reports")
    await page.fill("input[name=username]", "agent1")
    await page.fill("input[name=password]", "agent1-demo")
    await page.click("form.login button")
    await expect(page.locator("#problem")).to_contain_text("此页面需要主管权限")
