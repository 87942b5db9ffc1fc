// The supervisor wallboard: per queue waiting, longest wait, service level, ASA and abandon rate; agents by
// state and chats per agent; the bot's deflection rate; alerts; forcing an agent's state (audited).
//
// The server pushes `wallboard` over Socket.IO `/supervisor` after every change (and twice a second while
// someone watches); `alert` arrives when a rule starts to hold. Figures are computed server-side
// (agent_desktop/wallboard.py); this page only shows them. All data is set as text, never as markup.

import "./desktop.i18n.js";
import {
  api,
  byId,
  connectSocket,
  duration,
  errorBar,
  fill,
  h,
  localTime,
  loginForm,
  onSessionEnd,
  percent,
  renderChrome,
  restoreSession,
  session,
  timeElement,
  wireChrome,
} from "./desktop.dom.js";
import { addTranslations, language, onLanguageChange, t } from "./i18n.js";

addTranslations({
  zh: {
    "board.waiting": "排队总数",
    "board.longest": "最长等待",
    "board.bot": "机器人解决率",
    "board.botDetail": "解决 {resolved} · 转人工 {handed} · 放弃 {abandoned}",
    "board.agentsReady": "就绪坐席",
    "board.queues": "队列",
    "board.botByIntent": "机器人解决率（按意图）",
    "board.botNone": "窗口内没有结束的机器人会话。",
    "board.intent": "意图",
    "board.botResolved": "解决",
    "board.botHanded": "转人工",
    "board.botAbandoned": "放弃",
    "board.queue": "队列",
    "board.offered": "振铃",
    "board.connected": "接通中",
    "board.sl": "服务水平",
    "board.asa": "平均应答",
    "board.abandon": "放弃率",
    "board.handled": "接通 / 放弃",
    "board.agents": "坐席",
    "board.agent": "坐席",
    "board.state": "状态",
    "board.since": "持续",
    "board.chats": "会话数",
    "board.force": "强制状态",
    "board.set": "设置",
    "board.byState": "各状态坐席",
    "board.alerts": "告警",
    "board.noAlerts": "当前没有告警。",
    "board.lineOpen": "线路 {flow} 已临时开通，至 {until}（{reason}，{by}）",
    "board.lineClosed": "线路 {flow} 已临时关闭，至 {until}（{reason}，{by}）",
    "board.updated": "更新于",
    "board.config": "指标设置",
    "board.slThreshold": "服务水平阈值（秒）",
    "board.slTarget": "服务水平目标（%）",
    "board.maxWait": "等待告警（秒）",
    "board.botMin": "机器人解决率下限（%）",
    "board.window": "统计窗口（分钟）",
    "board.save": "保存设置",
    "board.saved": "已保存。",
    "board.forced": "已将 {name} 设为{state}。",
    "board.supervisorsOnly": "监控大屏仅供班长和管理员使用。",
    "alert.queue_wait": "队列 {subject} 等待已超过 {threshold}（当前 {value}）",
    "alert.service_level": "队列 {subject} 服务水平 {value} 低于目标 {threshold}",
    "alert.bot_resolution": "机器人解决率 {value} 低于 {threshold}",
  },
  en: {
    "board.waiting": "Waiting",
    "board.longest": "Longest wait",
    "board.bot": "Bot resolution",
    "board.botDetail": "resolved {resolved} · handed off {handed} · gave up {abandoned}",
    "board.agentsReady": "Agents available",
    "board.queues": "Queues",
    "board.botByIntent": "Bot resolution by intent",
    "board.botNone": "No bot conversation ended in the window.",
    "board.intent": "Intent",
    "board.botResolved": "Resolved",
    "board.botHanded": "Handed off",
    "board.botAbandoned": "Gave up",
    "board.queue": "Queue",
    "board.offered": "Ringing",
    "board.connected": "Connected",
    "board.sl": "Service level",
    "board.asa": "ASA",
    "board.abandon": "Abandon rate",
    "board.handled": "Answered / abandoned",
    "board.agents": "Agents",
    "board.agent": "Agent",
    "board.state": "State",
    "board.since": "For",
    "board.chats": "Chats",
    "board.force": "Force state",
    "board.set": "Set",
    "board.byState": "Agents by state",
    "board.alerts": "Alerts",
    "board.noAlerts": "No alerts right now.",
    "board.lineOpen": "Line {flow} is open until {until}, against its office hours ({reason}, {by})",
    "board.lineClosed": "Line {flow} is closed until {until}, against its office hours ({reason}, {by})",
    "board.updated": "Updated",
    "board.config": "Targets",
    "board.slThreshold": "SL threshold (s)",
    "board.slTarget": "SL target (%)",
    "board.maxWait": "Wait alert (s)",
    "board.botMin": "Bot resolution floor (%)",
    "board.window": "Window (min)",
    "board.save": "Save targets",
    "board.saved": "Saved.",
    "board.forced": "{name} is now {state}.",
    "board.supervisorsOnly": "The wallboard is for supervisors and admins.",
    "alert.queue_wait": "Queue {subject} has waited over {threshold} (now {value})",
    "alert.service_level": "Queue {subject} service level {value} is below the target {threshold}",
    "alert.bot_resolution": "Bot resolution {value} is below {threshold}",
  },
});

const STATES = ["offline", "available", "on_call", "in_chat", "wrap_up", "break"];
const board = { socket: null, linked: false, data: null, rows: new Map(), notice: null };

function start() {
  wireChrome();
  onLanguageChange(() => renderPage());
  onSessionEnd(() => {
    board.socket?.disconnect();
    board.socket = null;
    showLogin();
  });
  setInterval(tickWaits, 1000);
  restoreSession().then((user) => (user ? enter() : showLogin()));
}

function showLogin() {
  renderChrome("wallboard.title");
  byId("link-state").hidden = true;
  fill(
    byId("app"),
    loginForm(() => enter()),
  );
  byId("login-username")?.focus();
}

function enter() {
  renderPage();
  if (session.user.role !== "agent") connect();
}

function renderPage() {
  if (!session.user) {
    showLogin();
  } else if (session.user.role === "agent") {
    renderChrome("wallboard.title");
    fill(
      byId("app"),
      h("p", { class: "card", id: "board-denied", role: "alert" }, t("board.supervisorsOnly")),
    );
  } else {
    layout();
  }
}

function layout() {
  renderChrome("wallboard.title");
  board.rows.clear();
  fill(
    byId("app"),
    h(
      "div",
      { class: "board" },
      h("div", { id: "board-notice", role: "status" }),
      h("div", { id: "lines", role: "status" }),
      h("div", { class: "board-top", id: "figures" }),
      h(
        "section",
        { class: "card", "aria-labelledby": "alerts-heading" },
        h("h2", { id: "alerts-heading" }, t("board.alerts")),
        h("ul", { class: "alerts", id: "alerts", role: "log", "aria-live": "assertive" }),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "queues-heading" },
        h("h2", { id: "queues-heading" }, t("board.queues")),
        h("div", { id: "queues" }),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "bot-heading" },
        h("h2", { id: "bot-heading" }, t("board.botByIntent")),
        h("div", { id: "bot-intents" }),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "agents-heading" },
        h("h2", { id: "agents-heading" }, t("board.agents")),
        h("p", { id: "by-state" }),
        h(
          "table",
          { id: "agents-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, t("board.agent")),
              h("th", { scope: "col" }, t("board.state")),
              h("th", { scope: "col", class: "num" }, t("board.since")),
              h("th", { scope: "col", class: "num" }, t("board.chats")),
              h("th", { scope: "col" }, t("board.force")),
            ),
          ),
          h("tbody", { id: "agents" }),
        ),
      ),
      h("section", { class: "card", id: "config" }),
      h("p", { class: "board-at", id: "board-at" }),
    ),
  );
  renderLink();
  if (board.data) render(board.data);
}

function renderLink() {
  const element = byId("link-state");
  element.hidden = !session.user;
  element.dataset.linked = String(board.linked);
  element.textContent = board.linked ? t("link.online") : t("link.offline");
}

function connect() {
  board.socket?.disconnect();
  const socket = connectSocket("/supervisor", {
    onLink: (up) => {
      board.linked = up;
      renderLink();
    },
    onConnect: () => {
      socket.timeout(8000).emit("wallboard", {}, (timeoutError, reply) => {
        if (!timeoutError && reply?.ok) render(reply.ok);
      });
    },
  });
  board.socket = socket;
  socket.on("wallboard", (data) => render(data));
  // Between pushes, agent changes arrive one by one.
  socket.on("agent.state", (agent) => {
    const data = board.data;
    if (!data) return;
    const index = data.agents.findIndex((known) => known.user_id === agent.user_id);
    if (index >= 0) data.agents[index] = agent;
    else data.agents.push(agent);
    renderFigures(data);
    renderAgents(data);
  });
  socket.on("alert", (alert) => {
    if (board.data && !board.data.alerts.some((known) => known.id === alert.id)) {
      board.data.alerts.push(alert);
      renderAlerts(board.data.alerts);
    }
  });
}

function render(data) {
  board.data = data;
  if (!byId("figures")) return;
  renderFigures(data);
  renderLines(data.lines || []);
  renderAlerts(data.alerts);
  renderQueues(data);
  renderBotIntents(data);
  renderAgents(data);
  if (!byId("config-form")) renderConfig(data.config);
  fill(byId("board-at"), t("board.updated"), " ", timeElement(data.at));
}

function figure(id, label, value, detail = null) {
  return h(
    "div",
    { class: "card", id },
    h("div", { class: "figure-label" }, label),
    h("div", { class: "figure" }, value),
    detail ? h("div", { class: "muted small" }, detail) : null,
  );
}

function renderFigures(data) {
  const waiting = data.queues.reduce((sum, queue) => sum + queue.waiting, 0);
  const longest = Math.max(0, ...data.queues.map((queue) => queue.longest_wait_seconds));
  const ready = data.agents.filter((agent) => agent.state === "available").length;
  const staffed = data.agents.filter((agent) => agent.state !== "offline").length;
  fill(
    byId("figures"),
    figure("figure-waiting", t("board.waiting"), String(waiting)),
    figure("figure-longest", t("board.longest"), duration(longest)),
    figure(
      "figure-bot",
      t("board.bot"),
      percent(data.bot.rate),
      t("board.botDetail", {
        resolved: data.bot.resolved,
        handed: data.bot.handed_off,
        abandoned: data.bot.abandoned,
      }),
    ),
    figure("figure-ready", t("board.agentsReady"), `${ready} / ${staffed}`),
  );
}

function alertText(alert) {
  const format = (value) => (alert.rule === "queue_wait" ? duration(value) : percent(value));
  return t(`alert.${alert.rule}`, {
    subject: alert.subject,
    value: format(alert.value),
    threshold: format(alert.threshold),
  });
}

/** Lines an office-hours override keeps open or closed: a supervisor must not forget a closed line. */
function renderLines(lines) {
  fill(
    byId("lines"),
    lines.map((line) =>
      h(
        "p",
        { class: "notice line-override", dataset: { flow: line.flow, state: line.state } },
        t(line.state === "open" ? "board.lineOpen" : "board.lineClosed", {
          flow: line.flow,
          until: localTime(line.until),
          reason: line.reason,
          by: line.set_by,
        }),
      ),
    ),
  );
}

function renderAlerts(alerts) {
  fill(
    byId("alerts"),
    alerts.length === 0
      ? h("li", { class: "muted" }, t("board.noAlerts"))
      : alerts.map((alert) =>
          h(
            "li",
            { class: "alert-item", dataset: { rule: alert.rule, subject: alert.subject } },
            alertText(alert),
            " · ",
            timeElement(alert.raised_at),
          ),
        ),
  );
}

function renderQueues(data) {
  const target = data.config.sl_target;
  const headers = [
    [t("board.queue"), ""],
    [t("board.waiting"), "num"],
    [t("board.longest"), "num"],
    [t("board.offered"), "num"],
    [t("board.connected"), "num"],
    [t("board.sl"), "num"],
    [t("board.asa"), "num"],
    [t("board.abandon"), "num"],
    [t("board.handled"), "num"],
  ];
  fill(
    byId("queues"),
    h(
      "table",
      { id: "queues-table" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map(([label, kind]) => h("th", { class: kind || null, scope: "col" }, label)),
        ),
      ),
      h(
        "tbody",
        {},
        data.queues.map((queue) =>
          h(
            "tr",
            { dataset: { queue: queue.queue } },
            h("th", { scope: "row" }, queue.name),
            h("td", { class: "num waiting" }, String(queue.waiting)),
            h(
              "td",
              {
                class: `num longest${queue.longest_wait_seconds > data.config.max_wait_seconds ? " bad" : ""}`,
                dataset: { wait: String(queue.longest_wait_seconds), at: data.at },
              },
              duration(queue.longest_wait_seconds),
            ),
            h("td", { class: "num" }, String(queue.offered)),
            h("td", { class: "num" }, String(queue.connected)),
            h(
              "td",
              {
                class: `num sl${queue.service_level !== null && queue.service_level < target ? " bad" : ""}`,
              },
              percent(queue.service_level),
            ),
            h("td", { class: "num asa" }, duration(queue.asa_seconds)),
            h("td", { class: "num abandon" }, percent(queue.abandon_rate)),
            h("td", { class: "num" }, `${queue.answered} / ${queue.abandoned}`),
          ),
        ),
      ),
    ),
  );
}

/** The bot's resolution per intent (what customers asked about), most conversations first. */
function renderBotIntents(data) {
  const rows = data.bot.by_intent || [];
  const floor = data.config.bot_resolution_min;
  fill(
    byId("bot-intents"),
    rows.length === 0
      ? h("p", { class: "muted" }, t("board.botNone"))
      : h(
          "table",
          { id: "bot-intents-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, t("board.intent")),
              h("th", { scope: "col", class: "num" }, t("board.bot")),
              h("th", { scope: "col", class: "num" }, t("board.botResolved")),
              h("th", { scope: "col", class: "num" }, t("board.botHanded")),
              h("th", { scope: "col", class: "num" }, t("board.botAbandoned")),
            ),
          ),
          h(
            "tbody",
            {},
            rows.map((row) =>
              h(
                "tr",
                { dataset: { intent: row.intent } },
                h("th", { scope: "row" }, row.label[language()] || row.intent),
                h(
                  "td",
                  { class: `num rate${row.rate !== null && row.rate < floor ? " bad" : ""}` },
                  percent(row.rate),
                ),
                h("td", { class: "num" }, String(row.resolved)),
                h("td", { class: "num" }, String(row.handed_off)),
                h("td", { class: "num" }, String(row.abandoned)),
              ),
            ),
          ),
        ),
  );
}

/** Waits keep growing between pushes. */
function tickWaits() {
  for (const cell of document.querySelectorAll("td.longest[data-wait]")) {
    const waiting = Number(cell.closest("tr")?.querySelector(".waiting")?.textContent || 0);
    if (!waiting) continue;
    const elapsed = (Date.now() - Date.parse(cell.dataset.at)) / 1000;
    cell.textContent = duration(Number(cell.dataset.wait) + Math.max(0, elapsed));
  }
}

/** Agent rows are kept across pushes (only their text changes) so a half-made force choice survives. */
function renderAgents(data) {
  fill(
    byId("by-state"),
    t("board.byState"),
    ": ",
    STATES.map((state) =>
      h(
        "span",
        { class: "tag", dataset: { state } },
        `${t(`agentState.${state}`)} ${data.agents.filter((agent) => agent.state === state).length}`,
      ),
    ),
  );
  const body = byId("agents");
  const seen = new Set();
  for (const agent of data.agents) {
    seen.add(agent.user_id);
    let row = board.rows.get(agent.user_id);
    if (!row) {
      row = agentRow(agent);
      board.rows.set(agent.user_id, row);
    }
    row.name.textContent = agent.display_name || agent.username;
    row.state.textContent =
      t(`agentState.${agent.state}`) + (agent.reason ? ` · ${t(`reason.${agent.reason}`)}` : "");
    row.state.dataset.state = agent.state;
    row.since.dataset.since = agent.since;
    row.since.textContent = duration((Date.now() - Date.parse(agent.since)) / 1000);
    row.chats.textContent = `${agent.chats.length} / ${agent.max_chats}`;
  }
  for (const [id, row] of board.rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      board.rows.delete(id);
    }
  }
  const ordered = data.agents.map((agent) => board.rows.get(agent.user_id).tr);
  if (ordered.some((tr, index) => body.children[index] !== tr) || body.children.length !== ordered.length)
    fill(body, ordered);
}

function agentRow(agent) {
  const label = agent.display_name || agent.username;
  const choice = h(
    "select",
    { "aria-label": `${t("board.force")} ${label}` },
    ["available", "break", "offline"].map((state) => h("option", { value: state }, t(`state.${state}`))),
  );
  const row = {
    name: h("th", { scope: "row" }),
    state: h("td", { class: "agent-state" }),
    since: h("td", { class: "num" }),
    chats: h("td", { class: "num agent-chats" }),
  };
  const set = h(
    "button",
    {
      type: "button",
      class: "button button-quiet",
      "aria-label": `${t("board.set")} ${label}`,
      onclick: async () => {
        const change = { user_id: agent.user_id, state: choice.value };
        if (choice.value === "break") change.reason = "meeting";
        board.socket.timeout(8000).emit("force_state", change, (timeoutError, reply) => {
          if (timeoutError) errorBar.show({ code: "network" });
          else if (reply?.error) errorBar.show(reply.error);
          else showNotice(t("board.forced", { name: label, state: t(`agentState.${reply.ok.state}`) }));
        });
      },
    },
    t("board.set"),
  );
  row.tr = h(
    "tr",
    { dataset: { agent: agent.username } },
    row.name,
    row.state,
    row.since,
    row.chats,
    h("td", { class: "force" }, choice, set),
  );
  return row;
}

function showNotice(text) {
  fill(byId("board-notice"), text ? h("p", { class: "notice" }, text) : null);
}

function renderConfig(config) {
  const field = (id, label, value) =>
    h(
      "label",
      { class: "field", for: id },
      h("span", {}, label),
      h("input", { id, type: "number", min: 0, step: "any", value: String(value) }),
    );
  fill(
    byId("config"),
    h("h2", {}, t("board.config")),
    h(
      "form",
      {
        class: "config-form",
        id: "config-form",
        onsubmit: async (event) => {
          event.preventDefault();
          const read = (id) => Number(byId(id).value);
          try {
            const saved = await api("PATCH", "/api/desktop/wallboard/config", {
              json: {
                sl_threshold_seconds: read("cfg-sl-threshold"),
                sl_target: read("cfg-sl-target") / 100,
                max_wait_seconds: read("cfg-max-wait"),
                bot_resolution_min: read("cfg-bot-min") / 100,
                window_seconds: read("cfg-window") * 60,
              },
            });
            if (board.data) board.data.config = saved;
            showNotice(t("board.saved"));
          } catch (error) {
            errorBar.show(error);
          }
        },
      },
      field("cfg-sl-threshold", t("board.slThreshold"), config.sl_threshold_seconds),
      field("cfg-sl-target", t("board.slTarget"), Math.round(config.sl_target * 100)),
      field("cfg-max-wait", t("board.maxWait"), config.max_wait_seconds),
      field("cfg-bot-min", t("board.botMin"), Math.round(config.bot_resolution_min * 100)),
      field("cfg-window", t("board.window"), Math.round(config.window_seconds / 60)),
      h("button", { type: "submit", class: "button" }, t("board.save")),
    ),
  );
}

start();
