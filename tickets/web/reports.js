// Supervisor ticket reports: fetches /api/reports/tickets with the session's token and draws plain SVG
// bar charts and tables. Chinese or English (browser language, switchable); no build step.

const TOKEN_KEY = "huiliu.token"; // shared with the admin page
const SVG = "http://www.w3.org/2000/svg";

const TEXT = {
  zh: {
    title: "工单报表", username: "用户名", password: "密码", signIn: "登录", since: "从", until: "到",
    refresh: "刷新", csv: "导出 CSV", other: "English", tickets: "工单数", compliance: "SLA 达标率",
    bounceRate: "退回率（误派）", csat: "满意度", csatAnswers: "评价数", reopened: "重新打开",
    sla: "SLA 达标", stages: "各环节处理时长", departments: "各部门首次响应", volumeIntent: "按意图",
    volumeChannel: "按渠道", csatDistribution: "满意度分布", stage: "环节", department: "部门", count: "数量",
    avg: "平均", p50: "中位", p90: "P90", open: "进行中", met: "达标", breached: "超时", running: "计时中",
    unanswered: "未响应", notSupervisor: "此页面需要主管权限。", failed: "加载失败：",
    kinds: { first_response: "首次响应", resolution: "解决", step: "环节", collaboration: "协作" },
    none: "无数据",
  },
  en: {
    title: "Ticket reports", username: "Username", password: "Password", signIn: "Sign in", since: "From",
    until: "To", refresh: "Refresh", csv: "Export CSV", other: "中文", tickets: "Tickets",
    compliance: "SLA compliance", bounceRate: "Bounce-back (misdispatch)", csat: "CSAT",
    csatAnswers: "Ratings", reopened: "Reopened", sla: "SLA compliance", stages: "Handling time per stage",
    departments: "First response per department", volumeIntent: "By intent", volumeChannel: "By channel",
    csatDistribution: "CSAT distribution", stage: "Stage", department: "Department", count: "Count",
    avg: "Avg", p50: "Median", p90: "P90", open: "Open", met: "Met", breached: "Breached", running: "Running",
    unanswered: "Unanswered", notSupervisor: "This page needs the supervisor role.", failed: "Could not load: ",
    kinds: { first_response: "First response", resolution: "Resolution", step: "Step", collaboration: "Collaboration" },
    none: "No data",
  },
};

const params = new URLSearchParams(location.search);
const browserLanguage = (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en";
let lang = ["zh", "en"].includes(params.get("lang")) ? params.get("lang") : browserLanguage;
let token = readToken();
let lastReport = null;

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function writeToken(value) {
  token = value;
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the session lasts as long as this page
  }
}

const t = (key) => TEXT[lang][key] ?? key;

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) if (value !== null) node.setAttribute(name, value);
  for (const child of children.flat()) node.append(child instanceof Node ? child : String(child));
  return node;
}

function s(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// A horizontal bar chart: rows of {label, value, text, cls}.
function barChart(rows, max = null) {
  if (!rows.length) return h("p", { class: "muted" }, t("none"));
  const top = max ?? Math.max(...rows.map((row) => row.value), 1);
  const rowHeight = 22;
  const svg = s("svg", { viewBox: `0 0 420 ${rows.length * rowHeight}`, width: "100%", role: "img" });
  rows.forEach((row, index) => {
    const y = index * rowHeight;
    svg.append(s("text", { x: 0, y: y + 15 }, row.label));
    const width = Math.max(1, (row.value / top) * 220);
    svg.append(s("rect", { x: 140, y: y + 4, width, height: 14, class: `bar ${row.cls || ""}` }));
    svg.append(s("text", { x: 146 + width, y: y + 15 }, row.text ?? String(row.value)));
  });
  return svg;
}

function table(headers, rows) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", i ? { class: "n" } : {}, cell))))),
  );
}

function section(id, title, ...content) {
  return h("section", { id }, h("h2", {}, title), ...content);
}

function render(report) {
  const name = (text) => (text ? text[lang] : "");
  const sla = report.sla;
  const judged = sla.reduce((sum, row) => sum + row.met + row.breached, 0);
  const met = sla.reduce((sum, row) => sum + row.met, 0);
  const kpis = h(
    "section",
    { class: "kpis", id: "kpis" },
    [
      [t("tickets"), report.tickets],
      [t("compliance"), percent(judged ? met / judged : null)],
      [t("bounceRate"), percent(report.dispatch.bounce_rate)],
      [t("csat"), report.csat.average === null ? "–" : `${report.csat.average} / 5`],
      [t("csatAnswers"), `${report.csat.answered} / ${report.csat.requested}`],
      [t("reopened"), report.reopened],
    ].map(([label, value]) => h("div", { class: "kpi" }, h("strong", {}, value), h("span", {}, label))),
  );
  const slaChart = barChart(
    sla.map((row) => ({
      label: t("kinds")[row.kind] || row.kind,
      value: row.compliance ?? 0,
      text: `${percent(row.compliance)} (${row.met}/${row.met + row.breached})`,
      cls: row.compliance !== null && row.compliance < 0.8 ? "bad" : "good",
    })),
    1,
  );
  const stages = report.stages.filter((row) => row.completed.count || row.open);
  const stageChart = barChart(
    stages.map((row) => ({
      label: name(row.title).slice(0, 12),
      value: row.completed.avg_seconds ?? 0,
      text: duration(row.completed.avg_seconds),
    })),
  );
  const stageTable = table(
    [t("stage"), t("count"), t("avg"), t("p50"), t("p90"), t("open")],
    stages.map((row) => [
      name(row.title),
      row.completed.count,
      duration(row.completed.avg_seconds),
      duration(row.completed.p50_seconds),
      duration(row.completed.p90_seconds),
      row.open,
    ]),
  );
  const departmentTable = table(
    [t("department"), t("tickets"), t("avg"), t("p50"), t("p90"), t("unanswered")],
    report.departments.map((row) => [
      name(row.name),
      row.tickets,
      duration(row.first_response.avg_seconds),
      duration(row.first_response.p50_seconds),
      duration(row.first_response.p90_seconds),
      row.unanswered,
    ]),
  );
  const csatChart = barChart(
    Object.entries(report.csat.distribution)
      .reverse()
      .map(([score, count]) => ({ label: "★".repeat(Number(score)), value: count })),
  );
  const counts = (rows) => barChart(rows.map((row) => ({ label: row.key, value: row.count })));
  document.getElementById("report").replaceChildren(
    kpis,
    section("sla", t("sla"), slaChart),
    section("stages", t("stages"), stageChart, stageTable),
    section("departments", t("departments"), departmentTable),
    section("csat", t("csatDistribution"), csatChart),
    section("intents", t("volumeIntent"), counts(report.by_intent)),
    section("channels", t("volumeChannel"), counts(report.by_channel)),
  );
}

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  document.getElementById("lang").textContent = t("other");
}

function period() {
  const query = new URLSearchParams();
  const since = document.getElementById("since").value;
  const until = document.getElementById("until").value;
  const zone = -new Date().getTimezoneOffset();
  const offset = `${zone >= 0 ? "+" : "-"}${String(Math.floor(Math.abs(zone) / 60)).padStart(2, "0")}:${String(Math.abs(zone) % 60).padStart(2, "0")}`;
  if (since) query.set("since", `${since}T00:00:00${offset}`);
  if (until) query.set("until", `${until}T23:59:59${offset}`);
  return query.toString();
}

async function call(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) {
    writeToken(null);
    showLogin();
    throw new Error("signed out");
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(response.status === 403 ? t("notSupervisor") : problem.detail || response.statusText);
  }
  return response;
}

async function load() {
  const problem = document.getElementById("problem");
  try {
    lastReport = await (await call(`/api/reports/tickets?${period()}`)).json();
    problem.hidden = true;
    render(lastReport);
  } catch (error) {
    if (error.message === "signed out") return;
    problem.textContent = t("failed") + error.message;
    problem.hidden = false;
  }
}

async function downloadCsv() {
  const response = await call(`/api/reports/tickets.csv?${period()}`);
  const blob = await response.blob();
  const link = h("a", { href: URL.createObjectURL(blob), download: "tickets-report.csv" });
  document.body.append(link);
  link.click();
  link.remove();
}

function showLogin() {
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
}

function showApp() {
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  load();
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    document.getElementById("login-problem").textContent = body.detail || response.statusText;
    return;
  }
  writeToken(body.token);
  showApp();
});
document.getElementById("refresh").addEventListener("click", load);
document.getElementById("csv").addEventListener("click", () => downloadCsv().catch(() => {}));
document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  translate();
  if (lastReport) render(lastReport);
});

translate();
if (token) showApp();
else showLogin();
