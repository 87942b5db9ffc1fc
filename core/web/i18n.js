// UI text in Chinese and English. The language is the user's own (`user.language` from the server) until they
// pick another one in the header; that choice is remembered per username in localStorage, and the last choice
// also decides the language of the login screen.

const DICTIONARIES = {
  zh: {
    "app.title": "汇流 · 管理台",
    "app.brand": "汇流",
    "lang.zh": "中文",
    "lang.en": "English",
    "lang.switch": "界面语言",

    "login.heading": "登录",
    "login.subtitle": "全渠道客户联络中心",
    "login.username": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.submitting": "正在登录…",

    "header.logout": "退出",
    "nav.customers": "客户",
    "nav.lines": "电话线路",
    "nav.sms": "短信（开发）",
    "sms.heading": "开发短信收件箱",
    "sms.intro": "开发用短信通道（HUILIU_SMS_PROVIDER=sink，默认）“发出”的短信都在这里，不会真的发到手机。接入真实短信服务商后此列表为空。每 5 秒刷新。",
    "sms.filter": "手机号",
    "sms.filterPlaceholder": "只看发给此号码的短信",
    "sms.apply": "筛选",
    "sms.all": "全部",
    "sms.loading": "正在加载短信…",
    "sms.empty": "还没有短信。",
    "sms.col.at": "时间",
    "sms.col.to": "收件人",
    "sms.col.text": "内容",
    "sms.col.sender": "发送方",

    "role.agent": "坐席",
    "role.supervisor": "班长",
    "role.admin": "管理员",

    "error.dismiss": "关闭",
    "error.bad_credentials": "用户名或密码错误。",
    "error.login_locked": "登录失败次数过多，请 {seconds} 秒后再试。",
    "error.login_locked_later": "登录失败次数过多，请稍后再试。",
    "error.invalid_token": "登录已过期，请重新登录。",
    "error.unauthorized": "请先登录。",
    "error.forbidden_role": "您的角色无权执行此操作。",
    "error.customer_not_found": "找不到该客户。",
    "error.conversation_not_found": "找不到该会话。",
    "error.invalid_cursor": "分页位置已失效，请刷新列表。",
    "error.validation_failed": "提交的内容有误：{detail}",
    "error.payload_too_large": "内容太大，无法提交。",
    "error.mongodb_unavailable": "数据库暂时不可用，请稍后重试。",
    "error.override_bad_until": "结束时间须在将来且不超过 31 天。",
    "error.override_not_found": "该线路当前没有临时开关。",
    "error.flow_not_found": "找不到该流程。",

    "lines.heading": "电话线路",
    "lines.intro": "临时开通或关闭一条线路（台风停业、系统故障、延时促销），到时自动恢复按营业时间。只影响新来电。",
    "lines.loading": "正在加载线路…",
    "lines.empty": "还没有启用的 IVR 流程。",
    "lines.col.flow": "流程",
    "lines.col.version": "版本",
    "lines.col.now": "当前",
    "lines.col.change": "临时开关",
    "lines.calendar": "按营业时间",
    "lines.open_until": "已临时开通，至 {until}",
    "lines.closed_until": "已临时关闭，至 {until}",
    "lines.set_by": "{by}：{reason}",
    "lines.reason": "原因",
    "lines.reasonPlaceholder": "例如：台风停业",
    "lines.reasonNeeded": "请先填写原因。",
    "lines.for": "时长",
    "lines.minutes": "{count} 分钟",
    "lines.hours": "{count} 小时",
    "lines.open": "临时开通",
    "lines.close": "临时关闭",
    "lines.clear": "恢复营业时间",
    "error.redis_unavailable": "消息总线暂时不可用，请稍后重试。",
    "error.network": "无法连接服务器，请检查网络后重试。",

    "customers.heading": "客户",
    "customers.search": "搜索姓名、电话、邮箱或客户编号",
    "customers.searchButton": "搜索",
    "customers.col.name": "姓名",
    "customers.col.identities": "身份",
    "customers.col.tags": "标签",
    "customers.col.created": "创建时间",
    "customers.empty": "没有找到客户。",
    "customers.more": "加载更多",
    "customers.loading": "正在加载…",
    "customers.count": "已显示 {count} 位客户",
    "customer.unnamed": "未命名",
    "customer.vip": "VIP",
    "customer.back": "← 客户列表",
    "customer.id": "客户编号",
    "customer.language": "语言",
    "customer.identities": "身份",
    "customer.tags": "标签",
    "customer.profile": "资料",
    "customer.created": "创建时间",
    "customer.updated": "更新时间",
    "customer.mergedInto": "已合并到另一位客户：",
    "customer.mergedFrom": "已并入的客户",
    "customer.none": "—",

    "identity.phone": "电话",
    "identity.email": "邮箱",
    "identity.wechat_openid": "微信",
    "identity.wechat_unionid": "微信 UnionID",
    "identity.web_visitor": "网页访客",
    "identity.crm_id": "CRM",

    "timeline.heading": "时间线",
    "timeline.filter": "渠道",
    "timeline.all": "全部",
    "timeline.empty": "没有符合条件的记录。",
    "timeline.older": "加载更早的记录",
    "timeline.loading": "正在加载…",

    "channel.voice": "语音",
    "channel.webchat": "网页聊天",
    "channel.wechat": "微信",
    "channel.sms": "短信",
    "channel.email": "邮件",
    "channel.internal": "内部",

    "kind.call.started": "来电开始",
    "kind.call.answered": "电话接通",
    "kind.call.ended": "通话结束",
    "kind.call.consult_started": "坐席咨询转接对象",
    "kind.call.consult_ended": "咨询结束",
    "kind.message.in": "收到消息",
    "kind.message.out": "发出消息",
    "kind.ticket.created": "创建工单",
    "kind.note.added": "添加备注",
    "kind.identity.verified": "身份已验证",

    "actor.customer": "客户",
    "actor.agent": "坐席",
    "actor.bot": "机器人",
    "actor.system": "系统",

    "note.label": "添加备注",
    "note.placeholder": "写下备注，Ctrl+Enter 保存",
    "note.submit": "保存备注",
    "note.saving": "正在保存…",
    "note.savedHidden": "备注已保存（当前渠道筛选未显示内部记录）。",
  },
  en: {
    "app.title": "Huiliu · Admin",
    "app.brand": "Huiliu",
    "lang.zh": "中文",
    "lang.en": "English",
    "lang.switch": "Interface language",

    "login.heading": "Sign in",
    "login.subtitle": "Omnichannel contact center",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.submitting": "Signing in…",

    "header.logout": "Log out",
    "nav.customers": "Customers",
    "nav.lines": "Phone lines",
    "nav.sms": "SMS (dev)",
    "sms.heading": "Development SMS inbox",
    "sms.intro": "Every text the development SMS provider (HUILIU_SMS_PROVIDER=sink, the default) 'sent' is here; none reaches a phone. With a real provider this list stays empty. Refreshes every 5 s.",
    "sms.filter": "Phone number",
    "sms.filterPlaceholder": "Only texts to this number",
    "sms.apply": "Filter",
    "sms.all": "All",
    "sms.loading": "Loading texts…",
    "sms.empty": "No text messages yet.",
    "sms.col.at": "Time",
    "sms.col.to": "To",
    "sms.col.text": "Text",
    "sms.col.sender": "Sender",

    "role.agent": "Agent",
    "role.supervisor": "Supervisor",
    "role.admin": "Administrator",

    "error.dismiss": "Dismiss",
    "error.bad_credentials": "Incorrect username or password.",
    "error.login_locked": "Too many failed sign-ins. Try again in {seconds} s.",
    "error.login_locked_later": "Too many failed sign-ins. Try again later.",
    "error.invalid_token": "Your session has expired. Please sign in again.",
    "error.unauthorized": "Please sign in.",
    "error.forbidden_role": "Your role is not allowed to do this.",
    "error.customer_not_found": "This customer does not exist.",
    "error.conversation_not_found": "This conversation does not exist.",
    "error.invalid_cursor": "The page position is no longer valid; reload the list.",
    "error.validation_failed": "Some input was not accepted: {detail}",
    "error.payload_too_large": "That is too large to send.",
    "error.mongodb_unavailable": "The database is unavailable; try again shortly.",
    "error.override_bad_until": "The end must be in the future and at most 31 days away.",
    "error.override_not_found": "This line has no override now.",
    "error.flow_not_found": "This flow does not exist.",

    "lines.heading": "Phone lines",
    "lines.intro": "Open or close a line whatever its office hours say (a typhoon, an outage, a late promotion); it goes back to its hours by itself. New calls only.",
    "lines.loading": "Loading lines…",
    "lines.empty": "No IVR flow is active yet.",
    "lines.col.flow": "Flow",
    "lines.col.version": "Version",
    "lines.col.now": "Now",
    "lines.col.change": "Override",
    "lines.calendar": "Office hours",
    "lines.open_until": "Open until {until}",
    "lines.closed_until": "Closed until {until}",
    "lines.set_by": "{by}: {reason}",
    "lines.reason": "Reason",
    "lines.reasonPlaceholder": "e.g. typhoon closure",
    "lines.reasonNeeded": "Give a reason first.",
    "lines.for": "For",
    "lines.minutes": "{count} min",
    "lines.hours": "{count} h",
    "lines.open": "Open now",
    "lines.close": "Close now",
    "lines.clear": "Back to office hours",
    "error.redis_unavailable": "The message bus is unavailable; try again shortly.",
    "error.network": "Cannot reach the server. Check the connection and retry.",

    "customers.heading": "Customers",
    "customers.search": "Search name, phone, email or customer id",
    "customers.searchButton": "Search",
    "customers.col.name": "Name",
    "customers.col.identities": "Identities",
    "customers.col.tags": "Tags",
    "customers.col.created": "Created",
    "customers.empty": "No customers found.",
    "customers.more": "More",
    "customers.loading": "Loading…",
    "customers.count": "{count} customers shown",
    "customer.unnamed": "unnamed",
    "customer.vip": "VIP",
    "customer.back": "← Customers",
    "customer.id": "Customer id",
    "customer.language": "Language",
    "customer.identities": "Identities",
    "customer.tags": "Tags",
    "customer.profile": "Profile",
    "customer.created": "Created",
    "customer.updated": "Updated",
    "customer.mergedInto": "Merged into another customer:",
    "customer.mergedFrom": "Merged from",
    "customer.none": "—",

    "identity.phone": "Phone",
    "identity.email": "Email",
    "identity.wechat_openid": "WeChat",
    "identity.wechat_unionid": "WeChat UnionID",
    "identity.web_visitor": "Web visitor",
    "identity.crm_id": "CRM",

    "timeline.heading": "Timeline",
    "timeline.filter": "Channels",
    "timeline.all": "All",
    "timeline.empty": "Nothing matches.",
    "timeline.older": "Load older",
    "timeline.loading": "Loading…",

    "channel.voice": "Voice",
    "channel.webchat": "Web chat",
    "channel.wechat": "WeChat",
    "channel.sms": "SMS",
    "channel.email": "Email",
    "channel.internal": "Internal",

    "kind.call.started": "Call started",
    "kind.call.answered": "Call answered",
    "kind.call.ended": "Call ended",
    "kind.call.consult_started": "Agent consulted a transfer target",
    "kind.call.consult_ended": "Consultation ended",
    "kind.message.in": "Message received",
    "kind.message.out": "Message sent",
    "kind.ticket.created": "Ticket created",
    "kind.note.added": "Note added",
    "kind.identity.verified": "Identity verified",

    "actor.customer": "Customer",
    "actor.agent": "Agent",
    "actor.bot": "Bot",
    "actor.system": "System",

    "note.label": "Add a note",
    "note.placeholder": "Write a note; Ctrl+Enter saves",
    "note.submit": "Save note",
    "note.saving": "Saving…",
    "note.savedHidden": "Note saved (internal events are hidden by the channel filter).",
  },
};

export const LANGUAGES = Object.freeze(Object.keys(DICTIONARIES));
const LAST_CHOICE_KEY = "huiliu.language";
const listeners = new Set();
let current = initialLanguage();

function initialLanguage() {
  const stored = readStored(LAST_CHOICE_KEY);
  if (stored) return stored;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

function readStored(key) {
  try {
    const value = localStorage.getItem(key);
    return LANGUAGES.includes(value) ? value : null;
  } catch {
    return null; // storage disabled (private mode, policy): fall back to defaults
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // not remembered across reloads, still applied now
  }
}

/** The active language code ("zh" or "en"). */
export function language() {
  return current;
}

/** The locale tag for dates and numbers in the active language. */
export function locale() {
  return current === "zh" ? "zh-CN" : "en-GB";
}

/** Text for `key` in the active language, `{name}` placeholders filled from `vars`; the key if unknown. */
export function t(key, vars = {}) {
  const text = DICTIONARIES[current][key] ?? DICTIONARIES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

/** Whether `key` has a translation (used to fall back to server text for unknown error codes). */
export function has(key) {
  return key in DICTIONARIES[current] || key in DICTIONARIES.en;
}

function apply(code) {
  if (!LANGUAGES.includes(code) || code === current) return;
  current = code;
  for (const listener of listeners) listener(code);
}

/** The user picked `code` in the header: apply it and remember it for `username` (and the login screen). */
export function chooseLanguage(code, username) {
  if (!LANGUAGES.includes(code)) return;
  store(LAST_CHOICE_KEY, code);
  if (username) store(`${LAST_CHOICE_KEY}.${username}`, code);
  apply(code);
}

/** After login: the user's remembered choice, else the language in their profile. */
export function adoptUserLanguage(user) {
  const remembered = readStored(`${LAST_CHOICE_KEY}.${user.username}`);
  const code = remembered || (LANGUAGES.includes(user.language) ? user.language : current);
  store(LAST_CHOICE_KEY, code);
  apply(code);
}

/** Call `listener(code)` whenever the language changes; returns the function that stops it. */
export function onLanguageChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Pages with texts of their own (the desktop, the wallboard) add them: `{ zh: {...}, en: {...} }`. */
export function addTranslations(dictionaries) {
  for (const [code, entries] of Object.entries(dictionaries)) {
    if (DICTIONARIES[code]) Object.assign(DICTIONARIES[code], entries);
  }
}
