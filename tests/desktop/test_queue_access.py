"""An agent reads the contacts of the queues they serve, not another queue's; supervisors read all. Real app
over HTTP."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from agent_desktop import ContactKind, Desktop, NewContact
from agent_desktop.http import DESKTOP
from omnichannel import Identity, IdentityKind
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent, make_queue


async def test_an_agent_cannot_read_where_another_queues_contact_stands(
    server: TestServer, http: ApiClient, supervisor: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    _, insider_token = await make_agent(server, "after_sales_agent", {"after_sales": 1}, available=False)
    _, outsider_token = await make_agent(server, "billing_agent", {"billing": 3}, available=False)
    customer, _ = await desktop.acd.omni.customers.resolve(
        [Identity(kind=IdentityKind.phone, value="13900000007")]
    )
    contact = await desktop.acd.add(
        NewContact(queue="after_sales", kind=ContactKind.chat, customer_id=customer.id, external_ref="c-7")
    )
    path = f"/api/desktop/contacts/{contact.id}/position"

    status, problem, _ = await ApiClient(http.session, http.base, outsider_token).request("GET", path)
    assert status == 403 and problem["code"] == "not_your_queue"
    for reader in (ApiClient(http.session, http.base, insider_token), supervisor):
        status, position, _ = await reader.request("GET", path)
        assert status == 200 and (position["queue"], position["position"]) == ("after_sales", 1)
