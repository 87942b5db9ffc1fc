// The Huiliu admin page: login, customer search, one customer's unified timeline, and (supervisors and
// admins) the phone lines with their office-hours overrides; (admins) the development SMS inbox.
//
// Everything the server sends is data, never markup: the DOM is built with createElement/textContent (the `h`
// helper below), so a customer called `<img onerror=…>` or a message `<script>…</script>` shows as text.
// Screens are objects with mount/render/destroy; `render` rebuilds from the screen's state, which is how a
// language switch re-labels the page without fetching again.

import {
  api,
  byId,
  errorBar,
  errorMessage,
  fill,
  h,
  onSessionEnd,
  pad,
  restoreSession,
  session,
  startSession,
  wireChrome,
} from "./dom.js";
import { has, language, onLanguageChange, t } from "./i18n.js";

const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;
const CHANNELS = ["voice", "webchat", "wechat", "sms", "email", "internal"];
const OVERRIDE_MINUTES = [30, 60, 120, 240, 480, 1440];
const LINE_ROLES = new Set(["supervisor", "admin"]);
const SMS_REFRESH_MS = 5000;

let screen = null;

// ------------------------------------------------------------------------------------------------ DOM

/** Local time as `YYYY-MM-DD HH:mm` (`:ss` with `seconds`): the same in both languages, easy to scan. */
function localTime(iso, seconds = false) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? "");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}${seconds ? `:${pad(date.getSeconds())}` : ""}`;
  return `${day} ${time}`;
}

function timeElement(iso, seconds = false) {
  const date = new Date(iso);
  return h(
    "time",
    { datetime: iso, title: Number.isNaN(date.getTime()) ? null : date.toString() },
    localTime(iso, seconds),
  );
}

// ---------------------------------------------------------------------------------------- the chrome

function renderChrome() {
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  byId("brand-name").textContent = t("app.brand");
  byId("nav-customers").textContent = t("nav.customers");
  byId("nav-lines").textContent = t("nav.lines");
  byId("nav-lines").hidden = !canManageLines();
  byId("nav-lines").classList.toggle("active", screen instanceof LinesScreen);
  byId("nav-sms").textContent = t("nav.sms");
  byId("nav-sms").hidden = !isAdmin();
  byId("nav-sms").classList.toggle("active", screen instanceof SmsScreen);
  const switcher = byId("lang-switch");
  switcher.setAttribute("aria-label", t("lang.switch"));
  for (const button of switcher.querySelectorAll("button[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === language()));
  }
  const user = session.user;
  byId("nav").hidden = user === null;
  byId("who").hidden = user === null;
  byId("who-name").textContent = user ? user.display_name || user.username : "";
  byId("who-role").textContent = user ? t(`role.${user.role}`) : "";
  byId("who-role").dataset.role = user ? user.role : "";
  byId("logout").textContent = t("header.logout");
  byId("nav-customers").classList.toggle(
    "active",
    screen instanceof CustomersScreen || screen instanceof CustomerScreen,
  );
}

function show(next) {
  screen?.destroy();
  screen = next;
  const root = byId("app");
  root.replaceChildren();
  next.mount(root);
  renderChrome();
}

onSessionEnd((reason) => {
  errorBar.clear();
  show(new LoginScreen(reason));
});

// ----------------------------------------------------------------------------------------- routing

function parseRoute() {
  const [path, search = ""] = window.location.hash.replace(/^#/, "").split("?");
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    return null; // a hand-edited hash with a broken %-escape: back to the list
  }
  if (parts[0] === "lines" && parts.length === 1 && canManageLines()) return { name: "lines" };
  if (parts[0] === "sms" && parts.length === 1 && isAdmin()) {
    return { name: "sms", to: new URLSearchParams(search).get("to") || "" };
  }
  if (parts[0] === "customers" && parts.length === 2) return { name: "customer", id: parts[1] };
  if (parts[0] === "customers" && parts.length === 1) {
    return { name: "customers", q: new URLSearchParams(search).get("q") || "" };
  }
  return null;
}

function route() {
  if (session.user === null) {
    if (!(screen instanceof LoginScreen)) show(new LoginScreen());
    return;
  }
  const target = parseRoute();
  if (target === null) {
    window.location.replace("#/customers"); // fires hashchange, which routes again
    return;
  }
  errorBar.clear();
  if (target.name === "lines") show(new LinesScreen());
  else if (target.name === "sms") show(new SmsScreen(target.to));
  else show(target.name === "customer" ? new CustomerScreen(target.id) : new CustomersScreen(target.q));
}

function canManageLines() {
  return LINE_ROLES.has(session.user?.role);
}

function isAdmin() {
  return session.user?.role === "admin";
}

function customerHref(id) {
  return `#/customers/${encodeURIComponent(id)}`;
}

// -------------------------------------------------------------------------------------------- login

class LoginScreen {
  constructor(reason = null) {
    this.error = reason && reason.code !== "unauthorized" ? reason : null;
    this.username = "";
    this.password = "";
    this.busy = false;
  }

  mount(root) {
    this.root = root;
    this.render();
    this.root.querySelector(this.username ? "#login-password" : "#login-username")?.focus();
  }

  destroy() {}

  render() {
    const errorBox = h("div", { class: "form-error", id: "login-error", role: "alert" });
    errorBox.hidden = this.error === null;
    if (this.error !== null) errorBox.textContent = errorMessage(this.error);
    const form = h(
      "form",
      { class: "login-card", id: "login-form", novalidate: true, onsubmit: (event) => this.submit(event) },
      h(
        "div",
        { class: "login-brand" },
        h("div", { class: "login-title" }, "汇流 Huiliu"),
        h("div", { class: "login-subtitle" }, t("login.subtitle")),
      ),
      h("h1", { class: "login-heading" }, t("login.heading")),
      errorBox,
      h(
        "label",
        { class: "field" },
        h("span", { class: "field-label" }, t("login.username")),
        h("input", {
          id: "login-username",
          name: "username",
          autocomplete: "username",
          autocapitalize: "none",
          spellcheck: "false",
          required: true,
          maxlength: 64,
          value: this.username,
          oninput: (event) => (this.username = event.target.value),
        }),
      ),
      h(
        "label",
        { class: "field" },
        h("span", { class: "field-label" }, t("login.password")),
        h("input", {
          id: "login-password",
          name: "password",
          type: "password",
          autocomplete: "current-password",
          required: true,
          maxlength: 256,
          value: this.password,
          oninput: (event) => (this.password = event.target.value),
        }),
      ),
      h(
        "button",
        {
          type: "submit",
          class: "button button-primary button-block",
          id: "login-submit",
          disabled: this.busy,
        },
        this.busy ? t("login.submitting") : t("login.submit"),
      ),
    );
    fill(this.root, h("section", { class: "login-wrap" }, form));
  }

  async submit(event) {
    event.preventDefault();
    if (this.busy) return;
    const username = this.username.trim();
    if (!username || !this.password) {
      this.root.querySelector(username ? "#login-password" : "#login-username").focus();
      return;
    }
    this.busy = true;
    this.error = null;
    this.render();
    let result;
    try {
      result = await api("POST", "/api/auth/login", { json: { username, password: this.password } });
    } catch (error) {
      this.busy = false;
      this.error = error;
      this.password = "";
      this.render();
      this.root.querySelector("#login-password").focus();
      return;
    }
    startSession(result);
    if (parseRoute() === null) window.history.replaceState(null, "", "#/customers");
    route();
  }
}

// ------------------------------------------------------------------------------------------- lines

/** The IVR flows (one per line) and their office-hours overrides: open or close a line until a time. */
class LinesScreen {
  constructor() {
    this.lines = []; // [{flow, override}]
    this.loaded = false;
    this.busy = null; // the flow whose change is being sent
    this.drafts = new Map(); // flow -> {reason, minutes, error}
    this.alive = true;
  }

  mount(root) {
    this.root = root;
    this.render();
    this.load();
  }

  destroy() {
    this.alive = false;
  }

  draft(flow) {
    if (!this.drafts.has(flow)) this.drafts.set(flow, { reason: "", minutes: 60, error: false });
    return this.drafts.get(flow);
  }

  render() {
    this.results = h("div", { class: "panel", id: "lines" });
    fill(
      this.root,
      h(
        "section",
        { class: "page" },
        h("div", { class: "toolbar" }, h("h1", { class: "page-title" }, t("lines.heading"))),
        h("p", { class: "muted lines-intro" }, t("lines.intro")),
        this.results,
      ),
    );
    this.renderLines();
  }

  renderLines() {
    if (!this.loaded) {
      fill(this.results, loadingRow(t("lines.loading")));
      return;
    }
    if (this.lines.length === 0) {
      fill(this.results, h("p", { class: "empty", id: "lines-empty" }, t("lines.empty")));
      return;
    }
    const head = h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, t("lines.col.flow")),
        h("th", {}, t("lines.col.version")),
        h("th", {}, t("lines.col.now")),
        h("th", {}, t("lines.col.change")),
      ),
    );
    const body = h(
      "tbody",
      {},
      this.lines.map((line) => this.row(line)),
    );
    fill(this.results, h("table", { class: "grid", id: "lines-table" }, head, body));
  }

  row({ flow, override }) {
    const name = flow.name;
    const draft = this.draft(name);
    const busy = this.busy !== null;
    const state = override
      ? h(
          "div",
          { class: "line-state", dataset: { state: override.state } },
          h("strong", {}, t(`lines.${override.state}_until`, { until: localTime(override.until) })),
          h("div", { class: "muted" }, t("lines.set_by", { by: override.set_by, reason: override.reason })),
        )
      : h("div", { class: "line-state", dataset: { state: "calendar" } }, t("lines.calendar"));
    const reasonId = `line-reason-${name}`;
    const reason = h("input", {
      id: reasonId,
      class: "line-reason",
      maxlength: 200,
      placeholder: t("lines.reasonPlaceholder"),
      "aria-invalid": draft.error ? "true" : null,
      "aria-describedby": draft.error ? `${reasonId}-error` : null,
      value: draft.reason,
      oninput: (event) => (draft.reason = event.target.value),
    });
    const minutes = h(
      "select",
      {
        class: "line-minutes",
        "aria-label": t("lines.for"),
        onchange: (event) => (draft.minutes = Number(event.target.value)),
      },
      OVERRIDE_MINUTES.map((count) =>
        h(
          "option",
          { value: String(count), selected: count === draft.minutes },
          count < 60 ? t("lines.minutes", { count }) : t("lines.hours", { count: count / 60 }),
        ),
      ),
    );
    const button = (action, label, extra = "") =>
      h(
        "button",
        {
          type: "button",
          class: `button ${extra}`.trim(),
          dataset: { action },
          disabled: busy,
          onclick: () => (action === "clear" ? this.clear(name) : this.change(name, action, reason)),
        },
        label,
      );
    const controls = h(
      "div",
      { class: "line-controls" },
      h("label", { class: "field-inline" }, h("span", { class: "field-label" }, t("lines.reason")), reason),
      minutes,
      button("open", t("lines.open")),
      button("closed", t("lines.close")),
      override ? button("clear", t("lines.clear"), "button-quiet") : null,
      draft.error
        ? h("div", { class: "form-error", id: `${reasonId}-error`, role: "alert" }, t("lines.reasonNeeded"))
        : null,
    );
    return h(
      "tr",
      { class: "line-row", dataset: { flow: name } },
      h("td", {}, h("strong", {}, name)),
      h("td", {}, flow.active_version === null ? "—" : `v${flow.active_version}`),
      h("td", {}, state),
      h("td", {}, controls),
    );
  }

  async load() {
    try {
      const flows = await api("GET", "/api/flows");
      const active = flows.filter((flow) => flow.active_version !== null);
      const lines = await Promise.all(
        active.map(async (flow) => ({ flow, override: await this.override(flow.name) })),
      );
      if (!this.alive) return;
      this.lines = lines;
    } catch (error) {
      if (!this.alive) return;
      errorBar.show(error);
    }
    this.loaded = true;
    this.renderLines();
  }

  async override(name) {
    try {
      return await api("GET", `/api/flows/${encodeURIComponent(name)}/hours-override`);
    } catch (error) {
      if (error.code === "override_not_found") return null;
      throw error;
    }
  }

  async change(name, state, input) {
    const draft = this.draft(name);
    draft.reason = input.value.trim();
    draft.error = !draft.reason;
    if (draft.error) {
      this.renderLines();
      this.results.querySelector(`#line-reason-${CSS.escape(name)}`)?.focus();
      return;
    }
    await this.send(name, "PUT", { state, minutes: draft.minutes, reason: draft.reason });
  }

  async clear(name) {
    await this.send(name, "DELETE");
  }

  async send(name, method, json) {
    this.busy = name;
    this.renderLines();
    try {
      await api(method, `/api/flows/${encodeURIComponent(name)}/hours-override`, { json });
      errorBar.clear();
      this.drafts.delete(name);
    } catch (error) {
      errorBar.show(error);
    }
    this.busy = null;
    if (this.alive) await this.load();
  }
}

/** What the development SMS provider "sent" (GET /api/sms/sink), newest first, refreshed while shown. */
class SmsScreen {
  constructor(to) {
    this.to = to;
    this.entries = [];
    this.loaded = false;
    this.alive = true;
    this.timer = null;
  }

  mount(root) {
    this.root = root;
    this.render();
    this.load();
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
  }

  render() {
    const input = h("input", {
      id: "sms-to",
      type: "tel",
      value: this.to,
      placeholder: t("sms.filterPlaceholder"),
    });
    const filter = h(
      "form",
      {
        class: "toolbar-form",
        id: "sms-filter",
        onsubmit: (event) => {
          event.preventDefault();
          const to = input.value.trim();
          window.location.hash = to ? `#/sms?to=${encodeURIComponent(to)}` : "#/sms";
        },
      },
      h("label", { class: "field-inline", for: "sms-to" }, h("span", { class: "field-label" }, t("sms.filter"))),
      input,
      h("button", { type: "submit", class: "button" }, t("sms.apply")),
      this.to ? h("a", { class: "button button-quiet", href: "#/sms" }, t("sms.all")) : null,
    );
    this.results = h("div", { class: "panel", id: "sms" });
    fill(
      this.root,
      h(
        "section",
        { class: "page" },
        h("div", { class: "toolbar" }, h("h1", { class: "page-title" }, t("sms.heading")), filter),
        h("p", { class: "muted sms-intro" }, t("sms.intro")),
        this.results,
      ),
    );
    this.renderEntries();
  }

  renderEntries() {
    if (!this.loaded) {
      fill(this.results, loadingRow(t("sms.loading")));
      return;
    }
    if (this.entries.length === 0) {
      fill(this.results, h("p", { class: "empty", id: "sms-empty" }, t("sms.empty")));
      return;
    }
    const head = h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["at", "to", "text", "sender"].map((column) => h("th", {}, t(`sms.col.${column}`))),
      ),
    );
    const rows = this.entries.map((entry) =>
      h(
        "tr",
        { class: "sms-row", dataset: { id: entry.id } },
        h("td", {}, timeElement(entry.at, true)),
        h("td", { class: "sms-to" }, entry.to),
        h("td", { class: "sms-text" }, entry.text),
        h("td", { class: "muted" }, entry.sender),
      ),
    );
    fill(this.results, h("table", { class: "grid", id: "sms-table" }, head, h("tbody", {}, rows)));
  }

  async load() {
    try {
      const query = this.to ? { limit: 100, to: this.to } : { limit: 100 };
      const entries = await api("GET", "/api/sms/sink", { query });
      if (!this.alive) return;
      this.entries = entries;
      errorBar.clear();
    } catch (error) {
      if (!this.alive) return;
      errorBar.show(error);
    }
    this.loaded = true;
    this.renderEntries();
    this.timer = setTimeout(() => this.load(), SMS_REFRESH_MS);
  }
}

// ---------------------------------------------------------------------------------- shared pieces

function customerName(customer) {
  return customer.name
    ? h("span", { class: "customer-name" }, customer.name)
    : h("span", { class: "customer-name unnamed" }, t("customer.unnamed"));
}

function identityChip(identity) {
  return h(
    "span",
    { class: `identity identity-${identity.kind}`, dataset: { kind: identity.kind } },
    h(
      "span",
      { class: "identity-kind" },
      has(`identity.${identity.kind}`) ? t(`identity.${identity.kind}`) : identity.kind,
    ),
    h("span", { class: "identity-value" }, identity.value),
  );
}

function vipBadge(customer) {
  return customer.vip ? h("span", { class: "badge badge-vip", title: "VIP" }, t("customer.vip")) : null;
}

function tagChips(tags) {
  return (tags || []).map((tag) => h("span", { class: "tag" }, tag));
}

function loadingRow(text) {
  return h("div", { class: "loading" }, text);
}

// ------------------------------------------------------------------------------------ customer list

class CustomersScreen {
  constructor(q) {
    this.q = q;
    this.customers = [];
    this.nextCursor = null;
    this.loading = false;
    this.loaded = false;
    this.generation = 0; // a newer search makes older responses stale
    this.searchTimer = null;
    this.alive = true;
  }

  mount(root) {
    this.root = root;
    this.render();
    this.load({ reset: true });
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.searchTimer);
  }

  render() {
    const input = h("input", {
      type: "search",
      id: "customer-search",
      name: "q",
      placeholder: t("customers.search"),
      "aria-label": t("customers.search"),
      autocomplete: "off",
      maxlength: 128,
      value: this.q,
      oninput: (event) => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.search(event.target.value), SEARCH_DELAY_MS);
      },
    });
    const toolbar = h(
      "form",
      {
        class: "toolbar",
        role: "search",
        onsubmit: (event) => {
          event.preventDefault();
          clearTimeout(this.searchTimer);
          this.search(input.value);
        },
      },
      h("h1", { class: "page-title" }, t("customers.heading")),
      h(
        "div",
        { class: "search" },
        input,
        h("button", { type: "submit", class: "button" }, t("customers.searchButton")),
      ),
    );
    this.results = h("div", { class: "panel", id: "customer-results" });
    fill(this.root, h("section", { class: "page" }, toolbar, this.results));
    this.renderResults();
  }

  renderResults() {
    if (!this.loaded) {
      fill(this.results, loadingRow(t("customers.loading")));
      return;
    }
    if (this.customers.length === 0) {
      fill(this.results, h("p", { class: "empty", id: "customers-empty" }, t("customers.empty")));
      return;
    }
    const head = h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { class: "col-name" }, t("customers.col.name")),
        h("th", { class: "col-identities" }, t("customers.col.identities")),
        h("th", { class: "col-tags" }, t("customers.col.tags")),
        h("th", { class: "col-created" }, t("customers.col.created")),
      ),
    );
    const body = h(
      "tbody",
      {},
      this.customers.map((customer) => this.row(customer)),
    );
    const footer = h(
      "div",
      { class: "list-footer" },
      h(
        "span",
        { class: "muted", id: "customers-count" },
        t("customers.count", { count: this.customers.length }),
      ),
      this.nextCursor
        ? h(
            "button",
            {
              type: "button",
              class: "button",
              id: "customers-more",
              disabled: this.loading,
              onclick: () => this.load({ reset: false }),
            },
            this.loading ? t("customers.loading") : t("customers.more"),
          )
        : null,
    );
    fill(this.results, h("table", { class: "grid", id: "customers-table" }, head, body), footer);
  }

  row(customer) {
    const href = customerHref(customer.id);
    return h(
      "tr",
      {
        class: "customer-row",
        dataset: { id: customer.id },
        onclick: (event) => {
          if (event.target.closest("a") || window.getSelection()?.toString()) return;
          window.location.hash = href;
        },
      },
      h(
        "td",
        { class: "col-name" },
        h("a", { href, class: "row-link" }, customerName(customer)),
        vipBadge(customer),
      ),
      h(
        "td",
        { class: "col-identities" },
        h("div", { class: "identity-list" }, customer.identities.map(identityChip)),
      ),
      h("td", { class: "col-tags" }, tagChips(customer.tags)),
      h("td", { class: "col-created" }, timeElement(customer.created_at)),
    );
  }

  search(q) {
    const text = q.trim();
    if (text === this.q && this.loaded) return;
    this.q = text;
    window.history.replaceState(null, "", text ? `#/customers?q=${encodeURIComponent(text)}` : "#/customers");
    this.load({ reset: true });
  }

  async load({ reset }) {
    const generation = reset ? ++this.generation : this.generation;
    this.loading = true;
    if (reset) this.loaded = false;
    this.renderResults();
    try {
      const page = await api("GET", "/api/customers", {
        query: { q: this.q, limit: PAGE_SIZE, cursor: reset ? null : this.nextCursor },
      });
      if (!this.alive || generation !== this.generation) return;
      this.customers = reset ? page.customers : this.customers.concat(page.customers);
      this.nextCursor = page.next_cursor;
    } catch (error) {
      if (!this.alive || generation !== this.generation) return;
      errorBar.show(error);
    }
    this.loading = false;
    this.loaded = true;
    this.renderResults();
  }
}

// ------------------------------------------------------------------------------------- one customer

function kindLabel(kind) {
  return has(`kind.${kind}`) ? t(`kind.${kind}`) : kind;
}

function channelLabel(channel) {
  return has(`channel.${channel}`) ? t(`channel.${channel}`) : channel;
}

function fieldValue(value) {
  if (value === null || value === undefined) return t("customer.none");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** An event's body as readable text: `text` as a paragraph, every other key as `key: value`. */
function eventBody(body) {
  const parts = [];
  if (typeof body?.text === "string") parts.push(h("p", { class: "event-text" }, body.text));
  const fields = Object.entries(body || {}).filter(
    ([key, value]) => !(key === "text" && typeof value === "string"),
  );
  if (fields.length) {
    parts.push(
      h(
        "dl",
        { class: "event-fields" },
        fields.map(([key, value]) =>
          h("div", { class: "event-field" }, h("dt", {}, key), h("dd", {}, fieldValue(value))),
        ),
      ),
    );
  }
  return parts;
}

/** Who did it: staff by name; customers, bots and the system labelled as such. */
function actorText(actor) {
  if (!actor) return "";
  const who = actor.name || actor.id || "";
  if (actor.type === "agent" && who) return who;
  const role = has(`actor.${actor.type}`) ? t(`actor.${actor.type}`) : actor.type;
  return who ? `${role} · ${who}` : role;
}

function newIdempotencyKey() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  // randomUUID needs a secure context; plain-http deployments on a LAN still get a unique key
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

class CustomerScreen {
  constructor(id) {
    this.id = id;
    this.customer = null;
    this.customerError = null;
    this.events = [];
    this.nextCursor = null;
    this.channels = new Set();
    this.timelineLoaded = false;
    this.timelineError = null;
    this.timelineLoading = false;
    this.generation = 0;
    this.noteDraft = "";
    this.noteKey = null; // kept until the note is stored, so a retry after a network error cannot duplicate it
    this.savingNote = false;
    this.notice = null;
    this.alive = true;
  }

  mount(root) {
    this.root = root;
    this.render();
    this.loadCustomer();
    this.loadTimeline({ reset: true });
  }

  destroy() {
    this.alive = false;
  }

  render() {
    this.card = h("aside", { class: "panel customer-card", id: "customer-card" });
    this.filters = h("div", {
      class: "chips",
      id: "channel-filter",
      role: "group",
      "aria-label": t("timeline.filter"),
    });
    this.list = h("div", { class: "timeline-wrap" });
    this.noteForm = h("form", {
      class: "note-form",
      id: "note-form",
      onsubmit: (event) => this.saveNote(event),
    });
    const timeline = h(
      "section",
      { class: "panel timeline-panel" },
      h("div", { class: "panel-head" }, h("h2", {}, t("timeline.heading")), this.filters),
      this.noteForm,
      this.list,
    );
    fill(
      this.root,
      h(
        "section",
        { class: "page" },
        h(
          "div",
          { class: "toolbar" },
          h("a", { href: "#/customers", class: "back-link", id: "back-to-customers" }, t("customer.back")),
        ),
        h("div", { class: "customer-layout" }, this.card, timeline),
      ),
    );
    this.renderCard();
    this.renderFilters();
    this.renderNoteForm();
    this.renderTimeline();
  }

  renderCard() {
    const customer = this.customer;
    if (customer === null) {
      const text = this.customerError ? errorMessage(this.customerError) : t("timeline.loading");
      fill(this.card, loadingRow(text));
      return;
    }
    const rows = [
      [t("customer.id"), h("code", { class: "mono" }, customer.id)],
      [
        t("customer.identities"),
        customer.identities.length
          ? h("div", { class: "stack" }, customer.identities.map(identityChip))
          : t("customer.none"),
      ],
      [
        t("customer.tags"),
        customer.tags.length ? h("div", { class: "wrap" }, tagChips(customer.tags)) : t("customer.none"),
      ],
      [t("customer.language"), customer.language ? t(`lang.${customer.language}`) : t("customer.none")],
      [t("customer.created"), timeElement(customer.created_at)],
      [t("customer.updated"), timeElement(customer.updated_at)],
    ];
    for (const [key, value] of Object.entries(customer.profile || {})) rows.push([key, fieldValue(value)]);
    if (customer.merged_from.length) {
      rows.push([
        t("customer.mergedFrom"),
        h(
          "div",
          { class: "stack" },
          customer.merged_from.map((id) => h("a", { href: customerHref(id), class: "mono" }, id)),
        ),
      ]);
    }
    fill(
      this.card,
      h("h1", { class: "customer-title", id: "customer-title" }, customerName(customer), vipBadge(customer)),
      customer.merged_into
        ? h(
            "p",
            { class: "notice" },
            t("customer.mergedInto"),
            " ",
            h("a", { href: customerHref(customer.merged_into), class: "mono" }, customer.merged_into),
          )
        : null,
      h(
        "dl",
        { class: "facts" },
        rows.map(([label, value]) => h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, value))),
      ),
    );
  }

  renderFilters() {
    const chip = (label, pressed, onclick, channel) =>
      h(
        "button",
        {
          type: "button",
          class: `chip${channel ? ` chip-${channel}` : ""}`,
          "aria-pressed": String(pressed),
          dataset: channel ? { channel } : {},
          onclick,
        },
        label,
      );
    fill(
      this.filters,
      chip(t("timeline.all"), this.channels.size === 0, () => this.setChannels(new Set()), null),
      CHANNELS.map((channel) =>
        chip(channelLabel(channel), this.channels.has(channel), () => this.toggleChannel(channel), channel),
      ),
    );
  }

  renderNoteForm() {
    const textarea = h("textarea", {
      id: "note-text",
      name: "text",
      rows: 2,
      maxlength: 4000,
      placeholder: t("note.placeholder"),
      "aria-label": t("note.label"),
      value: this.noteDraft,
      oninput: (event) => {
        this.noteDraft = event.target.value;
        submit.disabled = this.savingNote || !this.noteDraft.trim();
      },
      onkeydown: (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) this.noteForm.requestSubmit();
      },
    });
    const submit = h(
      "button",
      {
        type: "submit",
        class: "button button-primary",
        id: "note-submit",
        disabled: this.savingNote || !this.noteDraft.trim(),
      },
      this.savingNote ? t("note.saving") : t("note.submit"),
    );
    fill(
      this.noteForm,
      textarea,
      h(
        "div",
        { class: "note-actions" },
        this.notice ? h("span", { class: "muted", id: "note-notice" }, t(this.notice)) : null,
        submit,
      ),
    );
  }

  renderTimeline() {
    if (!this.timelineLoaded) {
      fill(this.list, loadingRow(t("timeline.loading")));
      return;
    }
    const items = this.events.map((event) =>
      h(
        "li",
        {
          class: `event channel-${event.channel}`,
          dataset: { id: event.id, kind: event.kind, channel: event.channel, ts: event.ts },
        },
        h(
          "div",
          { class: "event-meta" },
          timeElement(event.ts, true),
          h("span", { class: `channel-badge channel-${event.channel}` }, channelLabel(event.channel)),
          h("span", { class: "event-kind", title: event.kind }, kindLabel(event.kind)),
          h("span", { class: "event-actor" }, actorText(event.actor)),
        ),
        h("div", { class: "event-body" }, eventBody(event.body)),
      ),
    );
    fill(
      this.list,
      items.length
        ? h("ol", { class: "timeline", id: "timeline" }, items)
        : h(
            "p",
            { class: "empty", id: "timeline-empty" },
            this.timelineError ? errorMessage(this.timelineError) : t("timeline.empty"),
          ),
      this.nextCursor
        ? h(
            "div",
            { class: "list-footer" },
            h(
              "button",
              {
                type: "button",
                class: "button",
                id: "timeline-older",
                disabled: this.timelineLoading,
                onclick: () => this.loadTimeline({ reset: false }),
              },
              this.timelineLoading ? t("timeline.loading") : t("timeline.older"),
            ),
          )
        : null,
    );
  }

  toggleChannel(channel) {
    const next = new Set(this.channels);
    if (next.has(channel)) next.delete(channel);
    else next.add(channel);
    this.setChannels(next);
  }

  setChannels(channels) {
    this.channels = channels;
    this.notice = null;
    this.renderFilters();
    this.renderNoteForm();
    this.loadTimeline({ reset: true });
  }

  async loadCustomer() {
    try {
      const customer = await api("GET", `/api/customers/${encodeURIComponent(this.id)}`);
      if (!this.alive) return;
      this.customer = customer;
    } catch (error) {
      if (!this.alive) return;
      this.customerError = error;
      errorBar.show(error);
    }
    this.renderCard();
  }

  async loadTimeline({ reset }) {
    const generation = reset ? ++this.generation : this.generation;
    this.timelineLoading = true;
    if (reset) this.timelineLoaded = false;
    this.renderTimeline();
    try {
      const page = await api("GET", `/api/customers/${encodeURIComponent(this.id)}/timeline`, {
        query: {
          limit: PAGE_SIZE,
          cursor: reset ? null : this.nextCursor,
          channel: [...this.channels].join(","),
        },
      });
      if (!this.alive || generation !== this.generation) return;
      const known = new Set(this.events.map((event) => event.id));
      this.events = reset
        ? page.events
        : this.events.concat(page.events.filter((event) => !known.has(event.id)));
      this.nextCursor = page.next_cursor;
      this.timelineError = null;
    } catch (error) {
      if (!this.alive || generation !== this.generation) return;
      if (reset) {
        this.events = [];
        this.nextCursor = null;
      }
      this.timelineError = error;
      errorBar.show(error);
    }
    this.timelineLoading = false;
    this.timelineLoaded = true;
    this.renderTimeline();
  }

  async saveNote(event) {
    event.preventDefault();
    const text = this.noteDraft.trim();
    if (!text || this.savingNote) return;
    this.noteKey ??= newIdempotencyKey();
    this.savingNote = true;
    this.notice = null;
    this.renderNoteForm();
    try {
      const result = await api("POST", `/api/customers/${encodeURIComponent(this.id)}/timeline`, {
        json: { kind: "note.added", channel: "internal", body: { text }, idempotency_key: this.noteKey },
      });
      if (!this.alive) return;
      this.noteDraft = "";
      this.noteKey = null;
      const note = result.event;
      if (this.channels.size === 0 || this.channels.has(note.channel)) {
        if (!this.events.some((existing) => existing.id === note.id)) this.events = [note, ...this.events];
        this.renderTimeline();
      } else {
        this.notice = "note.savedHidden";
      }
    } catch (error) {
      if (!this.alive) return;
      errorBar.show(error);
    }
    this.savingNote = false;
    this.renderNoteForm();
    if (this.noteDraft) this.root.querySelector("#note-text")?.focus();
  }
}

// ------------------------------------------------------------------------------------------- start

async function start() {
  wireChrome();
  onLanguageChange(() => {
    renderChrome();
    screen?.render();
    errorBar.render();
  });
  window.addEventListener("hashchange", route);
  renderChrome();
  await restoreSession();
  route();
}

start();
