// The agent desktop: login, agent state, offers with the screen-pop, several chats at once, the customer's
// timeline, tickets, notes, wrap-up codes and the softphone controls.
//
// Live data comes over Socket.IO `/agent` (offers, state, chat messages); commands go over the socket
// (accept, decline, resume) or REST (state, chat replies, tickets, notes, wrap-up, call control). After a
// reconnect the page asks `resume` for its state, a still-open offer and the contacts it serves.
//
// Softphone media (WebRTC) is not part of this page. The hook point is `window.huiliuDesktop.registerMedia(p)`:
// the page calls `p.attach(callId, socket)` when the agent's call connects (socket: this page's /agent
// Socket.IO connection, for signalling) and `p.detach(callId)` when it ends; hold, mute, the DTMF keypad and
// outbound dialling call `p.hold(callId, on)`, `p.mute(callId, on)`, `p.sendDtmf(callId, digit)` and
// `p.dial(number)`. Every method is optional and returns a Promise; a control whose method is missing stays
// disabled and says why. Answer, hang-up and transfer work without a provider (the ACD and /api/calls).
//
// Nothing from the server is parsed as HTML: every text goes through `h` (textContent).

import "./desktop.i18n.js";
import {
  api,
  byId,
  connectSocket,
  duration,
  errorBar,
  fill,
  h,
  loginForm,
  endSession,
  newKey,
  onSessionEnd,
  renderChrome,
  restoreSession,
  session,
  timeElement,
  wireChrome,
} from "./desktop.dom.js";
import { has, onLanguageChange, t } from "./i18n.js";

const BREAK_REASONS = ["lunch", "training", "meeting", "personal"];
const WRAP_UP_CODES = ["resolved", "follow_up", "callback_needed", "escalated", "complaint"];
const TICKET_CATEGORIES = ["inquiry", "complaint", "return_request", "repair", "billing"];
const TICKET_STATUSES = ["open", "pending-customer", "pending-internal", "resolved", "closed", "reopened"];
const PRIORITIES = ["low", "normal", "high", "urgent"];
const OPEN_TICKET_STATUSES = "new,open,pending-customer,pending-internal,reopened";
const CHAT_KINDS = "message.in,message.sent,message.out,message.failed";
const TYPING_IDLE_MS = 3000; // the agent stopped typing this long ago: the visitor's "typing…" goes away
const SHOWN_TYPING_MS = 6000; // a visitor's "typing" not renewed this long is stale
const CALLBACKS_EVERY_MS = 15000; // how often the pending callbacks are read again
const DIAL_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

/** One contact the agent serves: the contact, its customer context, and (chats) the conversation. */
class Work {
  constructor(contact, context = null) {
    this.contact = contact;
    this.context = context; // {customer, history, open_tickets, ivr, transcript, bot_summary}
    this.messages = [];
    this.draft = "";
    this.unread = 0;
    this.wrapCodes = new Set();
    this.wrapNote = "";
    this.partial = ""; // what the caller is saying right now (live transcript, not final yet)
    this.customerTyping = 0; // when the visitor last said they were typing (ms), 0: not typing
    this.typingSent = false; // whether the visitor was told the agent is typing
    this.typingTimer = null;
  }

  get id() {
    return this.contact.id;
  }

  get isChat() {
    return this.contact.kind === "chat";
  }

  addMessage(event) {
    if (this.messages.some((message) => message.id === event.id)) return false;
    this.messages.push(event);
    this.messages.sort((a, b) => a.ts.localeCompare(b.ts));
    return true;
  }
}

const desk = {
  socket: null,
  linked: false,
  agent: null,
  offer: null, // the screen-pop of the offer waiting for an answer
  notice: null, // a translated key shown above the work area (offer missed, state forced…)
  work: new Map(),
  focus: null, // "offer" or a contact id: what the side panel shows
  media: null, // softphone media provider (WebRTC), registered from outside
  attached: null, // the call id the media provider is attached to
  held: false,
  muted: false,
  dialDraft: "", // the number being typed in the softphone (kept across renders)
  transferDraft: "", // the transfer target being typed (kept across renders, and after a consultation)
  consult: null, // {callId, target, talking}: the agent consults a transfer target, the caller on hold
  panes: new Map(), // contact id -> chat pane elements kept across renders (drafts, scroll)
  staff: null,
  queues: new Map(), // queue id -> {name, waiting, since}: the queue.waiting figures of the agent's queues
  callbacks: [], // callbacks nobody took yet in the agent's queues (contacts), oldest first
};

// --------------------------------------------------------------------------------------------- start

function start() {
  wireChrome();
  onLanguageChange(() => renderAll());
  onSessionEnd(() => {
    disconnect();
    showLogin();
  });
  document.addEventListener("keydown", shortcuts);
  setInterval(tick, 1000);
  setInterval(loadCallbacks, CALLBACKS_EVERY_MS);
  window.huiliuDesktop = Object.freeze({
    /** provider: {attach(callId, socket), detach(callId), hold(callId, on), mute(callId, on),
     *  sendDtmf(callId, digit), dial(number)}, each optional, each returning a Promise. */
    registerMedia(provider) {
      desk.media = provider;
      desk.attached = null;
      renderSoftphone();
    },
  });
  restoreSession().then((user) => (user ? enter() : showLogin()));
}

function showLogin() {
  renderChrome("desktop.title");
  byId("link-state").hidden = true;
  fill(
    byId("app"),
    loginForm(() => enter()),
  );
  byId("login-username")?.focus();
}

function enter() {
  desk.work.clear();
  desk.queues.clear();
  desk.panes.clear();
  desk.offer = null;
  desk.focus = null;
  fill(
    byId("app"),
    h(
      "div",
      { class: "desk" },
      h(
        "section",
        { class: "desk-left" },
        h("div", { id: "state-panel", class: "card" }),
        h("div", { id: "queue-panel", class: "card" }),
        h("div", { id: "softphone", class: "card" }),
        h("div", { id: "work-list", class: "card" }),
      ),
      h(
        "section",
        { class: "desk-center" },
        h("div", { id: "notice", role: "status" }),
        h("div", { id: "offer" }),
        h("div", { id: "hint" }),
        h("div", { id: "chats", class: "chats" }),
      ),
      h("aside", { class: "desk-right", id: "panel" }),
    ),
  );
  renderAll();
  connect();
}

function renderAll() {
  if (!session.user) {
    showLogin();
    return;
  }
  renderChrome("desktop.title");
  renderLink();
  renderState();
  renderQueues();
  renderSoftphone();
  renderWorkList();
  renderNotice();
  renderOffer();
  renderChats(true);
  renderPanel();
}

// -------------------------------------------------------------------------------------------- socket

function connect() {
  disconnect();
  const socket = connectSocket("/agent", {
    onLink: (up) => {
      desk.linked = up;
      renderLink();
    },
    onConnect: () => resume(),
  });
  desk.socket = socket;
  socket.on("agent.state", (agent) => {
    if (agent.user_id !== session.user?.id) return;
    const missed = agent.reason === "missed_offer" && desk.agent?.reason !== "missed_offer";
    desk.agent = agent;
    if (missed) showNotice("notice.missedOffer");
    renderState();
    renderSoftphone();
    renderHint();
  });
  socket.on("queue.waiting", (figures) => {
    const since = new Date(Date.now() - figures.longest_wait_seconds * 1000).toISOString();
    desk.queues.set(figures.queue, { name: figures.name, waiting: figures.waiting, since });
    renderQueues();
  });
  socket.on("offer", (pop) => receiveOffer(pop));
  socket.on("offer.withdrawn", ({ contact_id: contactId, reason }) => {
    if (desk.offer?.contact.id !== contactId) return;
    desk.offer = null;
    if (desk.focus === "offer") desk.focus = firstWorkId();
    // the agent went offline or on a break while it rang: they left it, they did not miss it
    const left = reason === "agent_offline" || reason === "agent_break";
    showNotice(reason === "timeout" ? "notice.missedOffer" : left ? "notice.offerLeft" : "notice.offerGone");
    renderOffer();
    renderPanel();
    renderSoftphone();
  });
  socket.on("transcript", (event) => {
    const work = desk.work.get(event.contact_id);
    if (!work?.context) return;
    const transcript = work.context.transcript || [];
    if (transcript.some((known) => known.id === event.id)) return;
    work.context.transcript = [...transcript, event];
    work.partial = "";
    showTranscript(work);
  });
  socket.on("transcript.partial", (event) => {
    const work = desk.work.get(event.contact_id);
    if (!work?.context) return;
    work.partial = String(event.text || "");
    showTranscript(work);
  });
  socket.on("contact.ended", ({ contact_id: contactId, reason }) => {
    const work = desk.work.get(contactId);
    if (!work || work.contact.status !== "connected") return;
    work.contact = { ...work.contact, status: "ended" };
    work.partial = "";
    const kind = work.contact.kind;
    showNotice(kind === "call" ? callEndedNotice(reason) : "notice.chatEnded");
    desk.focus = work.id;
    renderAll();
    byId("wrap-up-form")?.querySelector("input")?.focus();
  });
  socket.on("call.consult", (event) => {
    // the target hung up (or the consultation ended elsewhere): the agent is back with the caller
    if (event.kind !== "call.consult_ended" || desk.consult?.callId !== event.call_id) return;
    desk.consult = null;
    if (event.outcome === "target_hung_up") showNotice("notice.consultEnded");
    renderSoftphone();
  });
  socket.on("chat.typing", ({ contact_id: contactId, typing }) => {
    const work = desk.work.get(contactId);
    if (!work) return;
    work.customerTyping = typing ? Date.now() : 0;
    renderTyping(work);
  });
  socket.on("error", (problem) => {
    // a command refused without an ack (e.g. typing) or a sign-in that ended: the session is over
    if (["invalid_token", "forbidden_role"].includes(problem?.code)) {
      disconnect();
      endSession();
    }
  });
  socket.on("chat.message", (event) => {
    const work = desk.work.get(event.contact_id);
    if (!work || !work.addMessage(event)) return;
    if (desk.focus !== work.id && event.actor?.type === "customer") work.unread += 1;
    renderMessages(work);
    renderWorkList();
  });
}

function showTranscript(work) {
  if (desk.focus !== work.id) return;
  const shown = byId("transcript");
  const section = transcriptSection(work.context.transcript || [], work.partial);
  if (shown && section) shown.replaceWith(section);
  else renderPanel();
}

function disconnect() {
  desk.socket?.disconnect();
  desk.socket = null;
  desk.linked = false;
}

/** Socket command with an ack: resolves to `ok`, rejects with `{code, detail}`. */
function command(event, data) {
  return new Promise((resolve, reject) => {
    if (!desk.socket?.connected) {
      reject({ code: "network", detail: "" });
      return;
    }
    desk.socket.timeout(8000).emit(event, data, (timeoutError, reply) => {
      if (timeoutError) reject({ code: "network", detail: "" });
      else if (reply?.error) reject(reply.error);
      else resolve(reply?.ok);
    });
  });
}

async function resume() {
  let state;
  try {
    state = await command("resume", {});
  } catch (error) {
    errorBar.show(error);
    return;
  }
  desk.agent = state.agent;
  const serving = new Set(state.contacts.map((contact) => contact.id));
  for (const id of [...desk.work.keys()]) if (!serving.has(id)) dropWork(id);
  for (const contact of state.contacts) {
    const known = desk.work.get(contact.id);
    if (known) known.contact = contact;
    else addWork(new Work(contact));
  }
  if (state.offer) receiveOffer(state.offer);
  else if (desk.offer) {
    desk.offer = null;
    if (desk.focus === "offer") desk.focus = firstWorkId();
  }
  if (desk.focus === null) desk.focus = firstWorkId();
  renderAll();
  loadCallbacks();
}

function receiveOffer(pop) {
  desk.offer = pop;
  desk.focus = "offer";
  desk.notice = null;
  renderNotice();
  renderOffer();
  renderPanel();
  renderSoftphone();
  byId("offer-accept")?.focus();
}

function shortcuts(event) {
  if (!desk.offer || !event.altKey) return;
  if (event.key === "a" || event.key === "A") {
    event.preventDefault();
    accept();
  } else if (event.key === "d" || event.key === "D") {
    event.preventDefault();
    decline();
  }
}

function tick() {
  for (const element of document.querySelectorAll("[data-until]")) {
    const left = (Date.parse(element.dataset.until) - Date.now()) / 1000;
    element.textContent = duration(Math.max(0, left));
  }
  for (const element of document.querySelectorAll("[data-since]")) {
    element.textContent = duration((Date.now() - Date.parse(element.dataset.since)) / 1000);
  }
  for (const work of desk.work.values()) {
    if (work.customerTyping && Date.now() - work.customerTyping >= SHOWN_TYPING_MS) {
      work.customerTyping = 0; // the visitor went quiet without saying so (closed the page)
      renderTyping(work);
    }
  }
}

// causes of a call that never connected (telephony's HangupCause), as opposed to one that was hung up
const NOT_CONNECTED = ["unknown_destination", "busy", "rejected", "no_answer", "unavailable", "failed"];

function callEndedNotice(cause) {
  return NOT_CONNECTED.includes(cause) ? "notice.callNotConnected" : "notice.callerHungUp";
}

function showNotice(key) {
  desk.notice = key;
  renderNotice();
}

// --------------------------------------------------------------------------------------------- state

function renderLink() {
  const element = byId("link-state");
  element.hidden = !session.user;
  element.dataset.linked = String(desk.linked);
  element.textContent = desk.linked ? t("link.online") : t("link.offline");
}

function renderState() {
  const panel = byId("state-panel");
  if (!panel) return;
  const agent = desk.agent;
  const state = agent?.state || "offline";
  const reasonSelect = h(
    "select",
    { id: "break-reason", "aria-label": t("state.reason") },
    BREAK_REASONS.map((reason) =>
      h("option", { value: reason, selected: agent?.reason === reason ? true : null }, t(`reason.${reason}`)),
    ),
  );
  const choose = (target) => async () => {
    const change = { state: target };
    if (target === "break") change.reason = reasonSelect.value;
    try {
      desk.agent = await api("PUT", "/api/desktop/me/state", { json: change });
      desk.notice = null;
      renderNotice();
      renderState();
      renderHint();
    } catch (error) {
      errorBar.show(error);
    }
  };
  const button = (target, id) =>
    h(
      "button",
      {
        type: "button",
        id,
        class: "button state-button",
        "aria-pressed": String(agent?.presence === target),
        onclick: choose(target),
      },
      t(`state.${target}`),
    );
  fill(
    panel,
    h("h2", {}, t("state.heading")),
    h(
      "p",
      { class: "state-now" },
      h("span", { class: `state-badge state-${state}`, id: "agent-state" }, t(`agentState.${state}`)),
      agent?.reason ? h("span", { class: "muted", id: "agent-reason" }, t(`reason.${agent.reason}`)) : null,
      agent
        ? h(
            "span",
            { class: "muted", "data-since": agent.since },
            duration((Date.now() - Date.parse(agent.since)) / 1000),
          )
        : null,
    ),
    agent?.wrap_up_until
      ? h(
          "p",
          { class: "wrap-timer", id: "wrap-up-timer", role: "timer" },
          t("state.wrapUpLeft"),
          " ",
          h(
            "strong",
            { "data-until": agent.wrap_up_until },
            duration((Date.parse(agent.wrap_up_until) - Date.now()) / 1000),
          ),
        )
      : null,
    h(
      "div",
      { class: "state-buttons", role: "group", "aria-label": t("state.heading") },
      button("available", "state-available"),
      h("span", { class: "break-group" }, button("break", "state-break"), reasonSelect),
      button("offline", "state-offline"),
    ),
  );
}

function renderQueues() {
  const panel = byId("queue-panel");
  if (!panel) return;
  const queues = [...desk.queues.entries()].sort(([a], [b]) => a.localeCompare(b));
  const waiting = queues.filter(([, queue]) => queue.waiting > 0);
  fill(
    panel,
    h("h2", {}, t("queues.heading")),
    waiting.length
      ? h(
          "ul",
          { class: "queue-list", id: "queue-list" },
          waiting.map(([id, queue]) =>
            h(
              "li",
              { "data-queue": id },
              h("strong", {}, queue.name),
              " ",
              t("queues.waiting", { count: queue.waiting }),
              h("span", { class: "muted" }, " · ", t("queues.longest"), " "),
              h(
                "span",
                { class: "muted", "data-since": queue.since },
                duration((Date.now() - Date.parse(queue.since)) / 1000),
              ),
            ),
          ),
        )
      : h("p", { class: "muted", id: "queue-list" }, t("queues.none")),
    desk.callbacks.length ? callbackList() : null,
  );
}

/** Callers who asked to be called back: the agent takes one (nobody else can) and the softphone dials it. */
function callbackList() {
  const canDial = typeof desk.media?.dial === "function";
  return h(
    "section",
    { id: "callbacks", "aria-labelledby": "callbacks-heading" },
    h("h3", { id: "callbacks-heading" }, t("callbacks.heading", { count: desk.callbacks.length })),
    h(
      "ul",
      { class: "queue-list" },
      desk.callbacks.map((contact) =>
        h(
          "li",
          { "data-callback": contact.id },
          h("strong", {}, contact.callback_number || "—"),
          h("span", { class: "muted" }, " · ", contact.queue, " · "),
          h(
            "span",
            { class: "muted", "data-since": contact.ended_at || contact.queue_entered_at },
            duration((Date.now() - Date.parse(contact.ended_at || contact.queue_entered_at)) / 1000),
          ),
          " ",
          h(
            "button",
            {
              type: "button",
              class: "button button-quiet",
              disabled: canDial && contact.callback_number ? null : true,
              title: canDial ? null : t("phone.noMedia"),
              onclick: () => takeCallback(contact),
            },
            t("callbacks.call"),
          ),
        ),
      ),
    ),
  );
}

async function loadCallbacks() {
  if (!session.user) return;
  try {
    desk.callbacks = await api("GET", "/api/desktop/callbacks");
  } catch {
    return; // the queue card keeps its last list; the link state says when the server is away
  }
  renderQueues();
}

async function takeCallback(contact) {
  try {
    await api("POST", `/api/desktop/callbacks/${encodeURIComponent(contact.id)}/take`);
  } catch (error) {
    errorBar.show(error);
    await loadCallbacks();
    return;
  }
  desk.callbacks = desk.callbacks.filter((pending) => pending.id !== contact.id);
  renderQueues();
  await dialOut({ value: contact.callback_number, focus() {} });
}

// ---------------------------------------------------------------------------------------- offers

function renderOffer() {
  const box = byId("offer");
  if (!box) return;
  renderHint();
  const pop = desk.offer;
  if (!pop) {
    fill(box);
    box.className = "";
    return;
  }
  box.className = "card offer";
  const contact = pop.contact;
  fill(
    box,
    h(
      "section",
      { role: "alertdialog", "aria-labelledby": "offer-title", "aria-describedby": "offer-summary" },
      h(
        "h2",
        { id: "offer-title" },
        t(contact.kind === "call" ? "offer.call" : "offer.chat"),
        " · ",
        customerName(pop.customer),
      ),
      h(
        "p",
        { id: "offer-summary", class: "muted" },
        t("offer.queue", { queue: contact.queue }),
        " · ",
        t(`priority.${contact.priority}`),
        pop.offer_expires_at
          ? [" · ", t("offer.expires"), " ", h("strong", { "data-until": pop.offer_expires_at }, "")]
          : null,
      ),
      pop.bot_summary
        ? h(
            "p",
            { class: "bot-summary", id: "offer-bot-summary" },
            t("pop.botSummary"),
            ": ",
            pop.bot_summary,
          )
        : null,
      h(
        "div",
        { class: "offer-actions" },
        h(
          "button",
          { type: "button", class: "button button-go", id: "offer-accept", onclick: accept },
          t("offer.accept"),
        ),
        h(
          "button",
          { type: "button", class: "button button-quiet", id: "offer-decline", onclick: decline },
          t("offer.decline"),
        ),
        h("span", { class: "muted" }, t("offer.keys")),
      ),
    ),
  );
  tick();
}

async function accept() {
  const pop = desk.offer;
  if (!pop) return;
  try {
    const contact = await command("accept", { contact_id: pop.contact.id });
    desk.offer = null;
    const work = new Work(contact, pop);
    addWork(work);
    desk.focus = work.id;
    renderAll();
    if (work.isChat) desk.panes.get(work.id)?.input.focus();
  } catch (error) {
    errorBar.show(error);
    if (error.code === "offer_gone") {
      desk.offer = null;
      renderOffer();
      renderPanel();
    }
  }
}

async function decline() {
  const pop = desk.offer;
  if (!pop) return;
  try {
    await command("decline", { contact_id: pop.contact.id });
  } catch (error) {
    errorBar.show(error);
  }
  desk.offer = null;
  desk.focus = firstWorkId();
  renderOffer();
  renderPanel();
  renderSoftphone();
}

function renderNotice() {
  const box = byId("notice");
  if (!box) return;
  box.className = desk.notice ? "notice" : "";
  fill(box, desk.notice ? t(desk.notice) : null);
}

// -------------------------------------------------------------------------------------------- work

function addWork(work) {
  desk.work.set(work.id, work);
  if (!work.context) loadContext(work);
  if (work.isChat) loadMessages(work);
}

function dropWork(id) {
  desk.work.delete(id);
  desk.panes.delete(id);
  if (desk.focus === id) desk.focus = firstWorkId();
}

function firstWorkId() {
  if (desk.offer) return "offer";
  const first = desk.work.keys().next();
  return first.done ? null : first.value;
}

/** Customer, history, open tickets, IVR context and transcript for a contact resumed without its pop. */
async function loadContext(work) {
  const contact = work.contact;
  const customerPath = `/api/customers/${encodeURIComponent(contact.customer_id)}`;
  try {
    const [customer, history, tickets, transcript] = await Promise.all([
      api("GET", customerPath),
      api("GET", `${customerPath}/timeline`, { query: { limit: 20 } }),
      api("GET", "/api/tickets", {
        query: { customer_id: contact.customer_id, status: OPEN_TICKET_STATUSES },
      }),
      contact.conversation_id
        ? api("GET", `${customerPath}/timeline`, {
            query: { limit: 200, kind: "transcript.final", conversation_id: contact.conversation_id },
          })
        : Promise.resolve({ events: [] }),
    ]);
    work.context = {
      customer,
      history: history.events,
      open_tickets: tickets.tickets,
      ivr: contact.context || {},
      transcript: [...transcript.events].reverse(),
      bot_summary: null,
    };
  } catch (error) {
    errorBar.show(error);
    return;
  }
  renderWorkList();
  const pane = desk.panes.get(work.id);
  if (pane) pane.title.textContent = customerName(work.context.customer);
  renderSoftphone();
  if (desk.focus === work.id) renderPanel();
}

async function loadMessages(work) {
  const contact = work.contact;
  if (!contact.conversation_id) return;
  try {
    const page = await api("GET", `/api/customers/${encodeURIComponent(contact.customer_id)}/timeline`, {
      query: { limit: 100, kind: CHAT_KINDS, conversation_id: contact.conversation_id },
    });
    for (const event of page.events) work.addMessage(event);
  } catch (error) {
    errorBar.show(error);
    return;
  }
  renderMessages(work);
}

function focusWork(id) {
  desk.focus = id;
  const work = desk.work.get(id);
  if (work) work.unread = 0;
  renderWorkList();
  renderPanel();
  for (const [paneId, pane] of desk.panes) pane.root.classList.toggle("focused", paneId === id);
}

function renderWorkList() {
  const box = byId("work-list");
  if (!box) return;
  const items = [...desk.work.values()];
  fill(
    box,
    h("h2", {}, t("work.heading")),
    items.length === 0
      ? h("p", { class: "muted", id: "work-empty" }, t("work.empty"))
      : h(
          "ul",
          { class: "work-items" },
          items.map((work) =>
            h(
              "li",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "work-item",
                  dataset: { id: work.id },
                  "aria-current": desk.focus === work.id ? "true" : null,
                  onclick: () => focusWork(work.id),
                },
                h("span", { class: "work-kind" }, t(work.isChat ? "kind.chat" : "kind.call")),
                h("span", { class: "work-name" }, work.context ? customerName(work.context.customer) : "…"),
                h("span", { class: "muted" }, t(`contactStatus.${work.contact.status}`)),
                work.unread
                  ? h(
                      "span",
                      { class: "unread", "aria-label": t("work.unread", { count: work.unread }) },
                      String(work.unread),
                    )
                  : null,
              ),
            ),
          ),
        ),
  );
}

// ------------------------------------------------------------------------------------------- chats

/** Chat panes are kept across renders so a draft, the caret and the scroll position survive updates. */
function renderChats(relabel = false) {
  const box = byId("chats");
  if (!box) return;
  const chats = [...desk.work.values()].filter((work) => work.isChat);
  for (const id of [...desk.panes.keys()]) if (!desk.work.has(id)) desk.panes.delete(id);
  for (const work of chats) {
    if (!desk.panes.has(work.id) || relabel) desk.panes.set(work.id, chatPane(work));
    renderMessages(work);
  }
  fill(
    box,
    chats.map((work) => desk.panes.get(work.id).root),
  );
  renderHint();
}

/** What the empty work area says: depends on the agent's state, the offer and the chats. */
function renderHint() {
  const box = byId("hint");
  if (!box) return;
  const idle = !desk.offer && ![...desk.work.values()].some((work) => work.isChat);
  fill(box, idle ? h("p", { class: "muted empty-work" }, t(stateHint())) : null);
}

function stateHint() {
  const state = desk.agent?.state;
  if (state === "available") return "chats.waiting";
  if (state === "on_call") return "chats.onCall";
  return "chats.notAvailable";
}

function chatPane(work) {
  const titleId = `chat-title-${work.id}`;
  const list = h("ol", { class: "messages", "aria-live": "polite", "aria-labelledby": titleId });
  const input = h("textarea", {
    class: "chat-input",
    rows: 2,
    "aria-label": t("chat.input"),
    placeholder: t("chat.placeholder"),
    value: work.draft,
    oninput: (event) => {
      work.draft = event.target.value;
      agentTyping(work, work.draft.trim() !== "");
    },
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    },
  });
  const send = h("button", { type: "submit", class: "button" }, t("chat.send"));
  const typing = h("p", { class: "chat-typing muted", role: "status", hidden: true });
  const form = h("form", { class: "chat-form", onsubmit: (event) => sendReply(event, work) }, input, send);
  const ended = work.contact.status !== "connected";
  input.disabled = ended;
  send.disabled = ended;
  const title = h("h3", { id: titleId }, work.context ? customerName(work.context.customer) : t("kind.chat"));
  const root = h(
    "section",
    {
      class: `chat-pane${desk.focus === work.id ? " focused" : ""}`,
      dataset: { id: work.id },
      "aria-labelledby": titleId,
      onfocusin: () => {
        if (desk.focus !== work.id) focusWork(work.id);
      },
    },
    h(
      "header",
      { class: "chat-head" },
      title,
      h(
        "button",
        {
          type: "button",
          class: "button button-quiet",
          disabled: ended ? true : null,
          onclick: () => endContact(work),
        },
        t("chat.end"),
      ),
    ),
    list,
    typing,
    form,
  );
  return { root, title, list, input, send, typing };
}

/** "Customer is typing…" under a chat's messages while the visitor types (renewed by the visitor). */
function renderTyping(work) {
  const pane = desk.panes.get(work.id);
  if (!pane) return;
  const typing = work.customerTyping && Date.now() - work.customerTyping < SHOWN_TYPING_MS;
  pane.typing.hidden = !typing;
  pane.typing.textContent = typing ? t("chat.customerTyping") : "";
}

/** Tell the visitor the agent is typing (once), and that they stopped after a pause or a send. */
function agentTyping(work, typing) {
  if (!work.isChat || work.contact.status !== "connected") return;
  clearTimeout(work.typingTimer);
  if (typing) work.typingTimer = setTimeout(() => agentTyping(work, false), TYPING_IDLE_MS);
  if (typing === work.typingSent || !desk.socket?.connected) return;
  work.typingSent = typing;
  desk.socket.emit("typing", { contact_id: work.id, typing });
}

function renderMessages(work) {
  const pane = desk.panes.get(work.id);
  if (!pane) return;
  const atBottom = pane.list.scrollHeight - pane.list.scrollTop - pane.list.clientHeight < 40;
  fill(
    pane.list,
    work.messages.map((event) => {
      if (event.kind === "message.failed") {
        return h(
          "li",
          { class: "message message-failed", role: "alert", dataset: { id: event.id } },
          h("span", { class: "message-text" }, t("chat.failed", { error: String(event.body?.error ?? "") })),
          timeElement(event.ts),
        );
      }
      const ours = event.kind !== "message.in"; // the agent's, the bot's or the system's words to the customer
      return h(
        "li",
        { class: `message ${ours ? "message-out" : "message-in"}`, dataset: { id: event.id } },
        h("span", { class: "message-who" }, actorName(event.actor)),
        h("span", { class: "message-text" }, String(event.body?.text ?? "")),
        attachmentLinks(event),
        timeElement(event.ts),
      );
    }),
  );
  if (atBottom) pane.list.scrollTop = pane.list.scrollHeight;
}

/** A message's files: web-chat and email attachments (fetched with the agent's token, then opened or saved
 * from memory) and a WeChat picture's own link. Never rendered inline as markup. */
function attachmentLinks(event) {
  const body = event.body || {};
  const files = [];
  if (body.attachment?.id) files.push({ path: `/api/webchat/attachments/${encodeURIComponent(body.attachment.id)}`, ...body.attachment });
  for (const file of Array.isArray(body.attachments) ? body.attachments : []) {
    if (file?.id) files.push({ path: `/api/email/attachments/${encodeURIComponent(file.id)}`, ...file });
  }
  const links = files.map((file) =>
    h(
      "button",
      {
        type: "button",
        class: "button button-quiet attachment",
        title: file.content_type || "",
        onclick: () => openAttachment(file.path, file.name || "attachment"),
      },
      `📎 ${file.name || t("chat.attachment")}`,
    ),
  );
  if (typeof body.pic_url === "string" && /^https?:\/\//.test(body.pic_url)) {
    links.push(
      h("a", { class: "attachment", href: body.pic_url, target: "_blank", rel: "noopener noreferrer" }, `🖼 ${t("chat.picture")}`),
    );
  }
  return links.length ? h("span", { class: "message-files" }, links) : null;
}

async function openAttachment(path, name) {
  try {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` }, cache: "no-store" });
    if (!response.ok) throw { code: `http_${response.status}`, detail: `${name}: ${response.status}` };
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: name, rel: "noopener" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    errorBar.show(error);
  }
}

async function sendReply(event, work) {
  event.preventDefault();
  const pane = desk.panes.get(work.id);
  const text = work.draft.trim();
  if (!text || pane.send.disabled) return;
  work.clientId ??= newKey(); // kept until stored: a retry after a network error cannot duplicate it
  pane.send.disabled = true;
  try {
    const result = await api("POST", `/api/desktop/contacts/${encodeURIComponent(work.id)}/messages`, {
      json: { text, client_id: work.clientId },
    });
    work.clientId = null;
    work.draft = "";
    pane.input.value = "";
    agentTyping(work, false);
    work.addMessage(result.event);
    renderMessages(work);
    pane.list.scrollTop = pane.list.scrollHeight;
  } catch (error) {
    errorBar.show(error);
  }
  pane.send.disabled = work.contact.status !== "connected";
  // back to this chat's input, unless the agent moved on to another chat while the reply was on its way:
  // their next keys must not land in this one
  const active = document.activeElement;
  if (!active || active === document.body || pane.root.contains(active)) pane.input.focus();
}

async function endContact(work) {
  try {
    work.contact = await api("POST", `/api/desktop/contacts/${encodeURIComponent(work.id)}/end`);
  } catch (error) {
    if (error.code !== "not_connected") {
      errorBar.show(error);
      return;
    }
    work.contact = { ...work.contact, status: "ended" };
  }
  desk.focus = work.id;
  renderAll();
  byId("wrap-up-form")?.querySelector("input")?.focus();
}

// ---------------------------------------------------------------------------------------- softphone

function currentCall() {
  return (
    [...desk.work.values()].find(
      (work) => work.contact.kind === "call" && work.contact.status === "connected",
    ) || null
  );
}

function renderSoftphone() {
  const box = byId("softphone");
  if (!box) return;
  const call = currentCall();
  const ringing = desk.offer?.contact.kind === "call" ? desk.offer : null;
  const media = desk.media;
  const callId = call?.contact.external_ref || null;
  if (!call) desk.transferDraft = ""; // a target typed for one call is not the next call's
  const transferTarget = h("input", {
    id: "transfer-target",
    "aria-label": t("phone.transferTarget"),
    placeholder: t("phone.transferTarget"),
    value: desk.transferDraft,
    oninput: () => (desk.transferDraft = transferTarget.value),
  });
  const dialNumber = h("input", {
    id: "dial-number",
    type: "tel",
    autocomplete: "off",
    "aria-label": t("phone.dialNumber"),
    placeholder: t("phone.dialNumber"),
    value: desk.dialDraft,
    oninput: () => (desk.dialDraft = dialNumber.value),
    onkeydown: (event) => {
      if (event.key === "Enter" && !call) dialOut(dialNumber);
    },
  });
  const typing = document.activeElement?.id; // a re-render (state, offers) must not lose the cursor
  if (desk.consult && desk.consult.callId !== callId) desk.consult = null; // that call is over
  const consult = desk.consult;
  syncMedia(callId);
  const needsMedia = media ? null : t("phone.noMedia");
  const mediaCall = (method, ...args) =>
    Promise.resolve()
      .then(() => media[method](...args))
      .catch((error) => errorBar.show(error));
  const mediaButton = (id, label, method, enabled, onclick, pressed = null) =>
    h(
      "button",
      {
        type: "button",
        class: "button button-quiet",
        id,
        disabled: media && typeof media[method] === "function" && enabled ? null : true,
        title: needsMedia,
        "aria-pressed": pressed === null ? null : String(pressed),
        onclick,
      },
      label,
    );
  const toggle = (flag, method) => async () => {
    desk[flag] = !desk[flag];
    await mediaCall(method, callId, desk[flag]);
    renderSoftphone();
  };
  fill(
    box,
    h("h2", {}, t("phone.heading")),
    h(
      "p",
      { class: "phone-status", id: "phone-status", role: "status" },
      call
        ? [
            t("phone.connected"),
            " · ",
            call.context ? customerName(call.context.customer) : "",
            " ",
            h("span", { "data-since": call.contact.connected_at }, ""),
          ]
        : ringing
          ? [t("phone.ringing"), " · ", customerName(ringing.customer)]
          : t("phone.idle"),
    ),
    h(
      "div",
      { class: "phone-row" },
      h(
        "button",
        {
          type: "button",
          class: "button button-go",
          id: "phone-answer",
          disabled: ringing ? null : true,
          onclick: accept,
        },
        t("phone.answer"),
      ),
      h(
        "button",
        {
          type: "button",
          class: "button button-stop",
          id: "phone-hangup",
          disabled: call ? null : true,
          onclick: () => hangUp(call),
        },
        t("phone.hangup"),
      ),
      mediaButton("phone-hold", t("phone.hold"), "hold", call && !consult, toggle("held", "hold"), desk.held),
      mediaButton("phone-mute", t("phone.mute"), "mute", call, toggle("muted", "mute"), desk.muted),
    ),
    h(
      "div",
      { class: "keypad", role: "group", "aria-label": t("phone.keypad") },
      DIAL_KEYS.map((key) =>
        mediaButton(null, key, "sendDtmf", call, () => mediaCall("sendDtmf", callId, key)),
      ),
    ),
    consult ? consultRow(call, consult) : transferRow(call, transferTarget),
    h(
      "div",
      { class: "phone-row" },
      dialNumber,
      mediaButton("phone-dial", t("phone.dial"), "dial", !call, () => dialOut(dialNumber)),
    ),
    needsMedia ? h("p", { class: "muted small", id: "phone-media-note" }, needsMedia) : null,
  );
  if (typing === "dial-number" || typing === "transfer-target") byId(typing)?.focus();
  tick();
}

function transferRow(call, transferTarget) {
  return h(
    "div",
    { class: "phone-row" },
    transferTarget,
    h(
      "button",
      {
        type: "button",
        class: "button button-quiet",
        id: "phone-blind",
        disabled: call ? null : true,
        onclick: () => transfer(call, transferTarget.value),
      },
      t("phone.blind"),
    ),
    h(
      "button",
      {
        type: "button",
        class: "button button-quiet",
        id: "phone-attended",
        disabled: call ? null : true,
        onclick: () => startConsult(call, transferTarget),
      },
      t("phone.attended"),
    ),
  );
}

/** While consulting: who the agent talks to, and the two ways out (hand the caller over, or go back). */
function consultRow(call, consult) {
  return h(
    "div",
    { class: "phone-row consult", role: "group", "aria-label": t("phone.attended") },
    h(
      "p",
      { class: "consult-status", id: "consult-status", role: "status" },
      t(consult.talking ? "phone.consultTalking" : "phone.consultRinging", { target: consult.target }),
    ),
    h(
      "button",
      {
        type: "button",
        class: "button button-go",
        id: "phone-consult-complete",
        disabled: consult.talking ? null : true,
        onclick: () => completeConsult(call),
      },
      t("phone.consultComplete"),
    ),
    h(
      "button",
      {
        type: "button",
        class: "button button-quiet",
        id: "phone-consult-cancel",
        onclick: () => cancelConsult(call),
      },
      t("phone.consultCancel"),
    ),
  );
}

const consultPath = (call, step = "") =>
  `/api/calls/${encodeURIComponent(call.contact.external_ref)}/consult${step}`;

/** Attended transfer, step 1: the caller holds, the target rings; once it answers the agent talks with
 *  the target on the softphone (the worker switches the call's audio to the consultation). */
async function startConsult(call, input) {
  const target = input.value.trim();
  if (!call || !target) {
    input.focus();
    return;
  }
  const consult = { callId: call.contact.external_ref, target, talking: false };
  desk.consult = consult;
  renderSoftphone();
  try {
    await api("POST", consultPath(call), { json: { target } });
    if (desk.consult === consult) consult.talking = true;
  } catch (error) {
    if (desk.consult === consult) desk.consult = null;
    if (error.code !== "consult_cancelled") errorBar.show(error);
  }
  renderSoftphone();
  byId(desk.consult ? "phone-consult-complete" : "transfer-target")?.focus();
}

async function completeConsult(call) {
  try {
    await api("POST", consultPath(call, "/complete"));
  } catch (error) {
    errorBar.show(error);
    return;
  }
  desk.consult = null;
  await endContact(call);
}

async function cancelConsult(call) {
  try {
    await api("POST", consultPath(call, "/cancel"));
  } catch (error) {
    if (error.code !== "no_consultation") {
      errorBar.show(error);
      return;
    }
  }
  desk.consult = null;
  renderSoftphone();
  byId("transfer-target")?.focus();
}

/** Call the number typed out: the provider places the call, and the agent is on it as on an accepted
 *  offer (resume brings the new contact; syncMedia attaches the softphone). */
async function dialOut(input) {
  const number = input.value.trim();
  if (!number) {
    input.focus();
    return;
  }
  if (!desk.media || typeof desk.media.dial !== "function") return;
  let dialed;
  try {
    dialed = await desk.media.dial(number);
  } catch (error) {
    errorBar.show(error);
    return;
  }
  desk.dialDraft = "";
  await resume();
  const work = dialed?.contact_id ? desk.work.get(dialed.contact_id) : null;
  if (work) {
    desk.focus = work.id;
    // a number that failed at once: its contact ended before the page knew it
    if (work.contact.status === "ended") showNotice(callEndedNotice(work.contact.end_cause));
    renderAll();
  }
}

/** Attach the media provider to the agent's call when it connects, detach it when it ends. */
function syncMedia(callId) {
  const media = desk.media;
  if (!media || desk.attached === callId) return;
  const previous = desk.attached;
  desk.attached = callId;
  desk.held = false;
  desk.muted = false;
  Promise.resolve()
    .then(async () => {
      if (previous && typeof media.detach === "function") await media.detach(previous);
      if (callId && typeof media.attach === "function") await media.attach(callId, desk.socket);
    })
    .catch((error) => errorBar.show(error));
}

async function hangUp(call) {
  if (!call) return;
  const callId = call.contact.external_ref;
  if (callId) {
    try {
      await api("POST", `/api/calls/${encodeURIComponent(callId)}/hangup`);
    } catch (error) {
      if (!["call_not_found", "call_ended"].includes(error.code)) {
        errorBar.show(error);
        return;
      }
    }
  }
  await endContact(call);
}

/** A blind transfer; an attended one starts with a consultation (startConsult, the phone-attended button). */
async function transfer(call, target) {
  if (!call) return;
  if (!target.trim()) {
    byId("transfer-target")?.focus();
    return;
  }
  try {
    await api("POST", `/api/calls/${encodeURIComponent(call.contact.external_ref)}/transfer`, {
      json: { target: target.trim() },
    });
  } catch (error) {
    errorBar.show(error);
    return;
  }
  await endContact(call);
}

// ------------------------------------------------------------------------------------ side panel

function focusedContext() {
  if (desk.focus === "offer" && desk.offer) return { pop: desk.offer, work: null };
  const work = desk.work.get(desk.focus);
  return work ? { pop: work.context, work } : null;
}

function renderPanel() {
  const panel = byId("panel");
  if (!panel) return;
  const focused = focusedContext();
  if (!focused || !focused.pop) {
    fill(panel, h("p", { class: "muted" }, t(focused ? "panel.loading" : "panel.empty")));
    return;
  }
  const { pop, work } = focused;
  const contact = work ? work.contact : pop.contact;
  fill(
    panel,
    customerCard(pop.customer),
    ivrSection(pop.ivr),
    pop.bot_summary
      ? h(
          "section",
          { class: "card", id: "bot-summary" },
          h("h2", {}, t("pop.botSummary")),
          h("p", {}, pop.bot_summary),
        )
      : null,
    transcriptSection(pop.transcript || [], work?.partial || ""),
    ticketsSection(pop, contact),
    timelineSection(pop.history || []),
    notesSection(pop.customer, contact),
    work ? wrapUpSection(work) : null,
  );
}

function customerName(customer) {
  return customer?.name || t("customer.unnamed");
}

function actorName(actor) {
  if (!actor) return "";
  if (actor.type === "agent") return actor.name || t("actor.agent");
  return t(`actor.${actor.type}`);
}

function customerCard(customer) {
  return h(
    "section",
    { class: "card", id: "customer-card", "aria-labelledby": "customer-name" },
    h(
      "h2",
      { id: "customer-name" },
      customerName(customer),
      customer.vip ? h("span", { class: "vip" }, " VIP") : null,
    ),
    h(
      "ul",
      { class: "identities" },
      customer.identities.map((identity) =>
        h("li", {}, h("span", { class: "muted" }, t(`identity.${identity.kind}`)), " ", identity.value),
      ),
    ),
    customer.tags?.length
      ? h(
          "p",
          { class: "tags" },
          customer.tags.map((tag) => h("span", { class: "tag" }, tag)),
        )
      : null,
  );
}

// What the caller gave a step: digits, an utterance, or several attempts ({dtmf} / {speech, confidence}).
function stepInput(input) {
  const one = (item) =>
    item && typeof item === "object"
      ? String(item.dtmf ?? item.speech ?? item.text ?? JSON.stringify(item))
      : String(item);
  return Array.isArray(input) ? input.map(one).join(", ") : one(input);
}

function ivrSection(ivr) {
  if (!ivr || (!ivr.path?.length && !Object.keys(ivr.variables || {}).length)) return null;
  return h(
    "section",
    { class: "card", id: "ivr" },
    h("h2", {}, t("pop.ivr")),
    ivr.path?.length
      ? h(
          "ol",
          { class: "ivr-path" },
          ivr.path.map((step) =>
            h(
              "li",
              {},
              String(step.node ?? ""),
              step.input ? ` (${stepInput(step.input)})` : "",
              step.result ? ` → ${step.result}` : "",
            ),
          ),
        )
      : null,
    Object.keys(ivr.variables || {}).length
      ? h(
          "dl",
          { class: "ivr-vars" },
          Object.entries(ivr.variables).map(([name, value]) => [
            h("dt", {}, name),
            h("dd", {}, typeof value === "string" ? value : JSON.stringify(value)),
          ]),
        )
      : null,
  );
}

function transcriptSection(transcript, partial = "") {
  if (!transcript.length && !partial) return null;
  const lines = transcript.map((event) => h("li", {}, timeElement(event.ts), " ", String(event.body?.text ?? "")));
  if (partial) lines.push(h("li", { class: "partial", "aria-busy": "true" }, partial));
  return h(
    "section",
    { class: "card", id: "transcript" },
    h("h2", {}, t("pop.transcript")),
    h("ol", { class: "transcript" }, lines),
  );
}

function eventText(event) {
  const body = event.body || {};
  for (const key of ["text", "summary", "subject", "title", "number"]) {
    if (typeof body[key] === "string" && body[key]) return body[key];
  }
  const parts = Object.entries(body)
    .filter(([, value]) => ["string", "number", "boolean"].includes(typeof value))
    .slice(0, 4)
    .map(([name, value]) => `${name}: ${value}`);
  return parts.join(" · ");
}

function timelineSection(history) {
  return h(
    "section",
    { class: "card", id: "history" },
    h("h2", {}, t("pop.history")),
    history.length === 0
      ? h("p", { class: "muted" }, t("pop.noHistory"))
      : h(
          "ol",
          { class: "timeline" },
          history.map((event) =>
            h(
              "li",
              { dataset: { channel: event.channel, kind: event.kind } },
              h("span", { class: `channel channel-${event.channel}` }, t(`channel.${event.channel}`)),
              " ",
              h("span", { class: "kind" }, has(`kind.${event.kind}`) ? t(`kind.${event.kind}`) : event.kind),
              " ",
              timeElement(event.ts),
              h("div", { class: "event-text" }, eventText(event)),
            ),
          ),
        ),
  );
}

// ------------------------------------------------------------------------------------------- tickets

async function refreshTickets(pop) {
  try {
    const page = await api("GET", "/api/tickets", {
      query: { customer_id: pop.customer.id, status: OPEN_TICKET_STATUSES },
    });
    pop.open_tickets = page.tickets;
  } catch (error) {
    errorBar.show(error);
  }
  renderPanel();
}

async function loadStaff() {
  if (desk.staff !== null) return desk.staff;
  try {
    desk.staff = await api("GET", "/api/staff");
  } catch {
    desk.staff = [];
  }
  return desk.staff;
}

function ticketsSection(pop, contact) {
  const canAssign = session.user?.role === "supervisor" || session.user?.role === "admin";
  return h(
    "section",
    { class: "card", id: "tickets", "aria-labelledby": "tickets-heading" },
    h("h2", { id: "tickets-heading" }, t("tickets.heading")),
    (pop.open_tickets || []).length === 0 ? h("p", { class: "muted" }, t("tickets.none")) : null,
    h(
      "ul",
      { class: "ticket-list" },
      (pop.open_tickets || []).map((ticket) => ticketItem(pop, ticket, canAssign)),
    ),
    newTicketForm(pop, contact),
  );
}

function ticketItem(pop, ticket, canAssign) {
  const status = h(
    "select",
    { "aria-label": t("tickets.status") },
    TICKET_STATUSES.map((value) =>
      h("option", { value, selected: value === ticket.status ? true : null }, t(`ticketStatus.${value}`)),
    ),
  );
  const comment = h("input", { "aria-label": t("tickets.comment"), placeholder: t("tickets.comment") });
  const assignee = canAssign ? h("select", { "aria-label": t("tickets.assignee") }) : null;
  if (canAssign) {
    loadStaff().then((staff) =>
      fill(
        assignee,
        h("option", { value: "" }, "—"),
        staff.map((person) =>
          h(
            "option",
            { value: person.user_id, selected: person.user_id === ticket.assignee_id ? true : null },
            person.display_name || person.username,
          ),
        ),
      ),
    );
  }
  const run = (action) => async () => {
    try {
      await action();
    } catch (error) {
      errorBar.show(error);
      return;
    }
    await refreshTickets(pop);
  };
  const path = `/api/tickets/${encodeURIComponent(ticket.id)}`;
  return h(
    "li",
    { class: "ticket", dataset: { id: ticket.id } },
    h(
      "p",
      {},
      h("strong", { class: "ticket-number" }, ticket.number),
      " ",
      h("span", { class: "ticket-subject" }, ticket.subject),
    ),
    h(
      "p",
      { class: "muted small" },
      t(`ticketStatus.${ticket.status}`),
      " · ",
      t(`priority.${ticket.priority}`),
      ticket.assignee_name ? [" · ", ticket.assignee_name] : null,
    ),
    h(
      "div",
      { class: "ticket-actions" },
      status,
      h(
        "button",
        {
          type: "button",
          class: "button button-quiet",
          onclick: run(() => api("POST", `${path}/transition`, { json: { to: status.value } })),
        },
        t("tickets.update"),
      ),
      comment,
      h(
        "button",
        {
          type: "button",
          class: "button button-quiet",
          onclick: run(() =>
            comment.value.trim()
              ? api("POST", `${path}/comments`, { json: { text: comment.value.trim() } })
              : Promise.resolve(),
          ),
        },
        t("tickets.addComment"),
      ),
      assignee,
      h(
        "button",
        {
          type: "button",
          class: "button button-quiet",
          disabled: canAssign ? null : true,
          title: canAssign ? null : t("tickets.assignSupervisor"),
          onclick: run(() =>
            api("POST", `${path}/assign`, { json: { assignee_id: assignee.value || null } }),
          ),
        },
        t("tickets.assign"),
      ),
    ),
  );
}

function newTicketForm(pop, contact) {
  const subject = h("input", { id: "ticket-subject", required: true, maxlength: 256 });
  const category = h(
    "select",
    { id: "ticket-category" },
    TICKET_CATEGORIES.map((value) => h("option", { value }, t(`category.${value}`))),
  );
  const priority = h(
    "select",
    { id: "ticket-priority" },
    PRIORITIES.map((value) =>
      h("option", { value, selected: value === "normal" ? true : null }, t(`priority.${value}`)),
    ),
  );
  const description = h("textarea", { id: "ticket-description", rows: 2, maxlength: 10000 });
  return h(
    "details",
    { class: "new-ticket" },
    h("summary", {}, t("tickets.new")),
    h(
      "form",
      {
        id: "ticket-form",
        onsubmit: async (event) => {
          event.preventDefault();
          if (!subject.value.trim()) {
            subject.focus();
            return;
          }
          const body = {
            customer_id: pop.customer.id,
            category: category.value,
            subject: subject.value.trim(),
            description: description.value,
            priority: priority.value,
            channel: contact?.kind === "call" ? "voice" : contact ? "webchat" : "internal",
          };
          if (contact?.conversation_id) body.conversation_id = contact.conversation_id;
          try {
            await api("POST", "/api/tickets", { json: body });
          } catch (error) {
            errorBar.show(error);
            return;
          }
          await refreshTickets(pop);
        },
      },
      h("label", { class: "field", for: "ticket-subject" }, h("span", {}, t("tickets.subject")), subject),
      h("label", { class: "field", for: "ticket-category" }, h("span", {}, t("tickets.category")), category),
      h("label", { class: "field", for: "ticket-priority" }, h("span", {}, t("tickets.priority")), priority),
      h(
        "label",
        { class: "field", for: "ticket-description" },
        h("span", {}, t("tickets.description")),
        description,
      ),
      h("button", { type: "submit", class: "button", id: "ticket-create" }, t("tickets.create")),
    ),
  );
}

// -------------------------------------------------------------------------------- notes, wrap-up

function notesSection(customer, contact) {
  const text = h("textarea", {
    id: "note-text",
    rows: 2,
    "aria-label": t("note.label"),
    placeholder: t("note.placeholder"),
    onkeydown: (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) event.target.form.requestSubmit();
    },
  });
  let key = null;
  return h(
    "section",
    { class: "card", id: "notes" },
    h("h2", {}, t("note.label")),
    h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          const value = text.value.trim();
          if (!value) return;
          key ??= newKey();
          const body = {
            kind: "note.added",
            channel: "internal",
            body: { text: value },
            idempotency_key: key,
          };
          if (contact?.conversation_id) body.conversation_id = contact.conversation_id;
          try {
            const result = await api("POST", `/api/customers/${encodeURIComponent(customer.id)}/timeline`, {
              json: body,
            });
            key = null;
            const focused = focusedContext();
            if (focused?.pop?.history && !focused.pop.history.some((e) => e.id === result.event.id)) {
              focused.pop.history = [result.event, ...focused.pop.history];
            }
            renderPanel();
          } catch (error) {
            errorBar.show(error);
          }
        },
      },
      text,
      h("button", { type: "submit", class: "button button-quiet", id: "note-submit" }, t("note.submit")),
    ),
  );
}

function wrapUpSection(work) {
  const connectedCall = work.contact.kind === "call" && work.contact.status === "connected";
  const note = h("textarea", {
    id: "wrap-up-note",
    rows: 2,
    "aria-label": t("wrap.note"),
    placeholder: t("wrap.note"),
    value: work.wrapNote,
    oninput: (event) => {
      work.wrapNote = event.target.value;
    },
  });
  return h(
    "section",
    { class: "card", id: "wrap-up" },
    h("h2", {}, t("wrap.heading")),
    h(
      "form",
      {
        id: "wrap-up-form",
        onsubmit: async (event) => {
          event.preventDefault();
          if (work.wrapCodes.size === 0) {
            errorBar.show({ code: "wrap_code_required" });
            return;
          }
          try {
            await api("POST", `/api/desktop/contacts/${encodeURIComponent(work.id)}/wrap-up`, {
              json: { codes: [...work.wrapCodes], note: work.wrapNote },
            });
          } catch (error) {
            errorBar.show(error);
            return;
          }
          dropWork(work.id);
          renderAll();
        },
      },
      h(
        "fieldset",
        { class: "wrap-codes" },
        h("legend", {}, t("wrap.codes")),
        WRAP_UP_CODES.map((code) =>
          h(
            "label",
            { class: "check" },
            h("input", {
              type: "checkbox",
              value: code,
              checked: work.wrapCodes.has(code),
              onchange: (event) =>
                event.target.checked ? work.wrapCodes.add(code) : work.wrapCodes.delete(code),
            }),
            t(`wrap.${code}`),
          ),
        ),
      ),
      note,
      connectedCall ? h("p", { class: "muted small" }, t("wrap.hangUpFirst")) : null,
      h(
        "button",
        { type: "submit", class: "button", id: "wrap-up-submit", disabled: connectedCall ? true : null },
        t("wrap.submit"),
      ),
    ),
  );
}

start();
