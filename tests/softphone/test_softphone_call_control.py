"""The softphone's call controls on real calls: the keypad (DTMF, RFC 2833), hold, and outbound dial.

Real parts: the web application (REST, ACD) on embedded MongoDB and redis-server, a telephony node (Kamailio +
one pjsua2 worker) writing to the same database, and pjsua2 phones in their own processes
(tests/telephony/peer.py) that report the digits and hold they saw. One phone calls in and the ACD connects
it to the agent; another registers at the SIP front as a customer's mobile number and the agent dials it.
No browser media here: WebRTC audio is test_softphone_media.py.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestServer

from agent_desktop import AgentSkills, Desktop, QueueConfig
from agent_desktop.http import DESKTOP
from tests.conftest import ApiClient
from tests.desktop.conftest import queue_request
from tests.softphone.phones import (  # noqa: F401 (the fixtures are used by name)
    PARKED_LINE,
    Phone,
    contact_status,
    go_available,
    mobile,
    node_fixture,
    phones_fixture,
    post,
    settings_fixture,
    until,
)
from tests.telephony.node import Node


async def test_an_agent_dials_a_customer_whose_phone_rings_answers_and_hears_the_keypad(
    node: Node, server: TestServer, agent: ApiClient, http: ApiClient, admin: ApiClient, phones: list[Phone]
) -> None:
    number = mobile()
    e164 = "+86" + number
    phone = Phone(
        node,
        "--register", node.front, "--caller", e164, "--answer-after", "2", "--until-hangup",
        seconds=40,
    )  # fmt: skip
    phones.append(phone)
    await phone.listening()
    await go_available(agent)

    # the agent types the number as people write it; the customer's phone rings
    status, dialed = await post(
        agent, "/api/calls/dial", {"number": f"{number[:3]} {number[3:7]} {number[7:]}"}
    )
    assert status == 201, dialed
    call_id = dialed["call_id"]
    assert dialed["number"] == e164 and dialed["contact_id"] and dialed["customer_id"]
    # the agent is on the call from the start: it is their connected contact, the ACD offers them nothing
    status, mine, _ = await agent.request("GET", "/api/desktop/me/contacts")
    assert [(c["external_ref"], c["status"], c["queue"]) for c in mine] == [
        (call_id, "connected", "outbound")
    ]
    status, me, _ = await agent.request("GET", "/api/desktop/me")
    assert me["state"] == "on_call" and me["call"] == dialed["contact_id"]
    # keys before the customer answered are refused with a reason, not lost
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "1"})
    assert (status, problem["code"]) == (409, "call_not_answered"), problem

    await until(node, lambda: (doc := node.call_doc(call_id)) and doc.get("answered_at"), what="the answer")
    for digits in ("159", "*#0", "a"):  # the keypad sends a key at a time; A-D too
        status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": digits})
        assert status == 204, problem
    status, problem = await post(agent, f"/api/calls/{call_id}/hold", {"on": True})
    assert status == 204, problem
    await asyncio.sleep(1.0)
    status, problem = await post(agent, f"/api/calls/{call_id}/hold", {"on": False})
    assert status == 204, problem
    # another agent may not touch it
    other = await http.as_user("agent2", "agent2-demo")
    for action, body in (("dtmf", {"digits": "9"}), ("hold", {"on": True}), ("hangup", None)):
        status, problem = await post(other, f"/api/calls/{call_id}/{action}", body)
        assert (status, problem["code"]) == (403, "not_your_call"), (action, problem)
    await asyncio.sleep(0.5)
    status, problem = await post(agent, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem

    heard = (await phone.result())["in1"]
    assert heard["connected"], heard
    assert heard["dtmf"] == "159*#0A" and heard["dtmf_methods"] == ["rfc2833"], heard
    assert heard["media"] == ["active", "remote_hold", "active"], heard
    call = await until(node, lambda: (doc := node.call_doc(call_id)) and doc["status"] == "ended" and doc)
    assert call["direction"] == "outbound" and call["cause"] == "agent_hangup"
    assert str(call["customer_id"]) == dialed["customer_id"]
    # the call is on the customer's timeline, found by the number, with the agent who made it
    status, customer, _ = await agent.request("GET", f"/api/customers/{dialed['customer_id']}")
    assert {"kind": "phone", "value": e164} in [
        {"kind": i["kind"], "value": i["value"]} for i in customer["identities"]
    ]
    events = await until(
        node,
        lambda: len(found := node.events(call_id)) >= 3 and found[-1]["kind"] == "call.ended" and found,
        what="call.ended on the timeline",
    )
    assert [e["kind"] for e in events] == ["call.started", "call.answered", "call.ended"]
    assert (
        events[0]["body"]["direction"] == "outbound"
        and str(events[0]["customer_id"]) == dialed["customer_id"]
    )
    assert {str(e["conversation_id"]) for e in events} == {dialed["conversation_id"]}
    connected = node.mongo().timeline.find_one({"body.contact_id": dialed["contact_id"]})
    assert connected["kind"] == "contact.connected" and connected["actor"]["type"] == "agent"
    # the call's end ends the contact by itself: the agent is in wrap-up, as after any call
    await until(node, lambda: contact_status(node, dialed["contact_id"]) == "ended")
    status, me, _ = await agent.request("GET", "/api/desktop/me")
    assert me["state"] == "wrap_up", me
    # every step is in the audit trail; the digits themselves are not (they may be a PIN)
    status, audit, _ = await admin.request("GET", "/api/audit", params={"limit": 50})
    actions = {(row["action"], row["status"]) for row in audit if row["actor"]["username"] == "agent1"}
    assert {("dial", 201), ("send_dtmf", 204), ("send_dtmf", 409), ("hold", 204), ("hang_up", 204)} <= actions
    dial_row = next(row for row in audit if row["action"] == "dial")
    assert dial_row["details"]["number"] == e164 and dial_row["details"]["call_id"] == call_id
    assert all("159" not in json.dumps(row["details"]) for row in audit if row["action"] == "send_dtmf")


async def test_a_caller_the_acd_connected_to_the_agent_is_held_and_hears_the_keypad(
    node: Node, server: TestServer, agent: ApiClient, http: ApiClient, phones: list[Phone]
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await desktop.store.create_queue(QueueConfig(id="after_sales", name="售后", skills={"after_sales": 1}))
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    await desktop.agents.set_skills(me["user_id"], AgentSkills(skills={"after_sales": 2}))
    await go_available(agent)
    caller = mobile()
    phone = Phone(node, "--target", f"sip:{PARKED_LINE}@{node.front}", "--caller", caller, seconds=30)
    phones.append(phone)
    call = await until(
        node,
        lambda: (found := node.calls_from("+86" + caller)) and found[0].get("answered_at") and found[0],
        what="the call answered",
    )
    call_id = call["_id"]
    # before the agent has it, the agent may not act on it
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "1"})
    assert (status, problem["code"]) == (403, "not_your_call"), problem

    await desktop.gateway.enqueue(queue_request(call_id, caller="+86" + caller))
    contact = await until(
        node,
        lambda: (
            (doc := node.mongo().queue_contacts.find_one({"external_ref": call_id, "status": "offered"}))
            and doc
        ),
        what="the offer",
    )
    status, accepted = await post(agent, f"/api/desktop/offers/{contact['_id']}/accept")
    assert status == 200, accepted
    status, problem = await post(agent, f"/api/calls/{call_id}/hold", {"on": True})
    assert status == 204, problem
    await asyncio.sleep(1.0)
    status, problem = await post(agent, f"/api/calls/{call_id}/hold", {"on": False})
    assert status == 204, problem
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "42"})
    assert status == 204, problem
    status, problem = await post(agent, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem

    heard = (await phone.result())["call"]
    assert heard["connected"] and heard["dtmf"] == "42" and heard["dtmf_methods"] == ["rfc2833"], str(heard)
    assert heard["media"] == ["active", "remote_hold", "active"], str(heard)
    ended = await until(node, lambda: (doc := node.call_doc(call_id)) and doc["status"] == "ended" and doc)
    assert ended["cause"] == "agent_hangup"
    # a call that has ended takes no more keys
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "1"})
    assert (status, problem["code"]) == (409, "call_ended"), problem


async def test_dialling_refuses_what_cannot_be_called_and_agents_who_cannot_take_it(
    node: Node, server: TestServer, agent: ApiClient, http: ApiClient, phones: list[Phone]
) -> None:
    status, problem = await post(http, "/api/calls/dial", {"number": "13912345678"})
    assert (status, problem["code"]) == (401, "unauthorized"), problem
    for bad in ("abc", "sip:13912345678@evil.example", "1000", "12", "+86 139"):
        status, problem = await post(agent, "/api/calls/dial", {"number": bad})
        assert (status, problem["code"]) == (400, "invalid_number"), (bad, problem)
        assert bad in problem["detail"]
    status, problem = await post(agent, "/api/calls/dial")
    assert (status, problem["code"]) == (400, "body_required"), problem
    for body in ({}, {"number": ""}, {"number": "1" * 41}, {"number": "13912345678", "x": 1}):
        status, problem = await post(agent, "/api/calls/dial", body)
        assert (status, problem["code"]) == (400, "validation_failed"), (body, problem)
    for digits in ("", "x", "1" * 33, "1 2", "E"):
        status, problem = await post(agent, "/api/calls/some-call/dtmf", {"digits": digits})
        assert (status, problem["code"]) == (400, "validation_failed"), (digits, problem)
    # an agent signed out of the ACD does not call out; nothing is dialed
    status, problem = await post(agent, "/api/calls/dial", {"number": mobile()})
    assert (status, problem["code"]) == (409, "agent_offline"), problem
    assert node.mongo().calls.count_documents({"direction": "outbound"}) == 0

    # a number nobody has (not registered at the SIP front): the call fails and the agent's contact ends
    # with it, into wrap-up — whether it failed before or after the desktop recorded the contact
    await go_available(agent)
    status, dialed = await post(agent, "/api/calls/dial", {"number": mobile()})
    assert status == 201, dialed
    ended = await until(
        node, lambda: (doc := node.call_doc(dialed["call_id"])) and doc["status"] == "ended" and doc
    )
    assert ended["cause"] == "unknown_destination", ended
    await until(node, lambda: contact_status(node, dialed["contact_id"]) == "ended", what="the contact ended")
    status, mine, _ = await agent.request("GET", "/api/desktop/me/contacts")
    assert [(c["id"], c["end_cause"]) for c in mine] == [(dialed["contact_id"], "unknown_destination")]
    status, me, _ = await agent.request("GET", "/api/desktop/me")
    assert me["state"] == "wrap_up" and me["call"] is None, me
    status, problem = await post(agent, f"/api/calls/{dialed['call_id']}/hangup")
    assert (status, problem["code"]) == (409, "call_ended"), problem
