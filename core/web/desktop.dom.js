// Shared by the agent desktop and the supervisor wallboard: DOM building, the REST client, the session, the
// login form, the language switch and the error bar.
//
// Everything the server sends is data, never markup: elements are built with createElement/textContent (`h`),
// so a customer's `<img onerror=…>` or a chat message `<script>…</script>` shows as text.

import { adoptUserLanguage, chooseLanguage, has, language, t } from "./i18n.js";
import { io } from "./vendor/socket.io.esm.min.js";

export const TOKEN_KEY = "huiliu.token";
export const session = { token: readSession(TOKEN_KEY), user: null };

// ------------------------------------------------------------------------------------------------ DOM

/** An element with `props` (class, attributes, on* listeners) and children (strings become text nodes). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value") element.value = value;
    else if (name === "checked") element.checked = Boolean(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  return fill(element, ...children);
}

/** Replace `element`'s children; arrays are flattened and null/undefined/false skipped. */
export function fill(element, ...children) {
  element.replaceChildren(
    ...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false),
  );
  return element;
}

export const byId = (id) => document.getElementById(id);

function pad(number) {
  return String(number).padStart(2, "0");
}

/** Local time as `MM-DD HH:mm:ss` (or `HH:mm:ss` for today). */
export function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? "");
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

export function timeElement(iso) {
  return h("time", { datetime: iso }, localTime(iso));
}

/** Seconds as `m:ss` (or `h:mm:ss`). */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.round(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = `${pad(total % 60)}`;
  return hours ? `${hours}:${pad(minutes)}:${rest}` : `${minutes}:${rest}`;
}

export function percent(share) {
  return share === null || share === undefined ? "–" : `${Math.round(share * 1000) / 10}%`;
}

export function newKey() {
  return crypto.randomUUID().replaceAll("-", "");
}

function readSession(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeSession(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // storage disabled: the session lasts until this page is closed
  }
}

// ------------------------------------------------------------------------------------------------ API

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

const sessionEndListeners = new Set();

/** Call `listener()` when the session ends (logout, expired token). */
export function onSessionEnd(listener) {
  sessionEndListeners.add(listener);
}

/** Call the REST API; resolves to the JSON body, rejects with `ApiError`. A 401 ends the session. */
export async function api(method, path, { json, query } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json, application/problem+json" };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "network", "");
  }
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 300) };
    }
  }
  if (response.ok) return data;
  const error = new ApiError(response.status, data?.code || `http_${response.status}`, data?.detail || "");
  if (response.status === 401 && token && token === session.token) endSession();
  throw error;
}

/** The text to show for an API or socket error: ours for codes we know, else the server's `detail`. */
export function errorMessage(error) {
  const code = error?.code;
  if (code === "validation_failed") return t("error.validation_failed", { detail: error.detail });
  if (code && has(`error.${code}`)) return t(`error.${code}`);
  return error?.detail || code || String(error?.message || error);
}

export function startSession(result) {
  session.token = result.token;
  session.user = result.user;
  writeSession(TOKEN_KEY, result.token);
  adoptUserLanguage(result.user);
}

export function endSession() {
  session.token = null;
  session.user = null;
  writeSession(TOKEN_KEY, null);
  for (const listener of sessionEndListeners) listener();
}

/** The stored token's user, or null (the token expired or was revoked). */
export async function restoreSession() {
  if (!session.token) return null;
  try {
    session.user = await api("GET", "/api/auth/me");
    adoptUserLanguage(session.user);
    return session.user;
  } catch {
    session.token = null;
    writeSession(TOKEN_KEY, null);
    return null;
  }
}

export async function logout() {
  try {
    await api("POST", "/api/auth/logout");
  } catch {
    // the token is dropped here whatever the server said
  }
  endSession();
}

// ---------------------------------------------------------------------------------------- socket

const REFUSED = new Set(["invalid_token", "unauthorized", "token_expired", "forbidden_role"]);

/** A Socket.IO connection to `namespace` with the session's token, reconnecting on its own. `onLink(up)`
 * follows the link (to show it); `onConnect(socket)` runs on every (re)connect; a refused token ends the
 * session. */
export function connectSocket(namespace, { onLink, onConnect }) {
  const socket = io(namespace, {
    auth: (callback) => callback({ token: session.token }),
    transports: ["websocket"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 3000,
  });
  socket.on("connect", () => {
    onLink(true);
    onConnect?.(socket);
  });
  socket.on("disconnect", () => onLink(false));
  socket.on("connect_error", (error) => {
    onLink(false);
    if (REFUSED.has(error?.data?.code)) {
      socket.disconnect();
      endSession();
    }
  });
  return socket;
}

// ------------------------------------------------------------------------------------- error bar

export const errorBar = {
  error: null,
  show(error) {
    this.error = error;
    this.render();
  },
  clear() {
    this.error = null;
    this.render();
  },
  render() {
    const bar = byId("error-bar");
    bar.hidden = this.error === null;
    byId("error-text").textContent = this.error === null ? "" : errorMessage(this.error);
    byId("error-close").setAttribute("aria-label", t("error.dismiss"));
    byId("error-close").title = t("error.dismiss");
  },
};

/** Wire the header's language buttons, the logout button and the error bar's close button. */
export function wireChrome() {
  for (const button of document.querySelectorAll("#lang-switch button[data-lang]")) {
    button.addEventListener("click", () => chooseLanguage(button.dataset.lang, session.user?.username));
  }
  byId("logout").addEventListener("click", () => logout());
  byId("error-close").addEventListener("click", () => errorBar.clear());
}

/** Re-label the header for the current language and user. */
export function renderChrome(titleKey) {
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  document.title = t(titleKey);
  byId("brand-name").textContent = t(titleKey);
  const switcher = byId("lang-switch");
  switcher.setAttribute("aria-label", t("lang.switch"));
  for (const button of switcher.querySelectorAll("button[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === language()));
  }
  const user = session.user;
  byId("who").hidden = user === null;
  byId("who-name").textContent = user ? user.display_name || user.username : "";
  byId("who-role").textContent = user ? t(`role.${user.role}`) : "";
  byId("logout").textContent = t("header.logout");
  errorBar.render();
}

// -------------------------------------------------------------------------------------------- login

/** The login form; `onDone(result)` after a successful login. */
export function loginForm(onDone) {
  const error = h("div", { class: "form-error", id: "login-error", role: "alert" });
  const username = h("input", {
    id: "login-username",
    name: "username",
    autocomplete: "username",
    required: true,
    autofocus: true,
  });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "button", id: "login-submit" }, t("login.submit"));
  const form = h(
    "form",
    {
      class: "login-card",
      id: "login-form",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        if (!username.value.trim() || !password.value) {
          (username.value.trim() ? password : username).focus();
          return;
        }
        submit.disabled = true;
        submit.textContent = t("login.submitting");
        try {
          const result = await api("POST", "/api/auth/login", {
            json: { username: username.value.trim(), password: password.value },
          });
          startSession(result);
          onDone(result);
        } catch (failure) {
          error.textContent = errorMessage(failure);
          password.value = "";
          submit.disabled = false;
          submit.textContent = t("login.submit");
          password.focus();
        }
      },
    },
    h("h1", { class: "login-heading" }, t("login.heading")),
    h("label", { class: "field", for: "login-username" }, h("span", {}, t("login.username")), username),
    h("label", { class: "field", for: "login-password" }, h("span", {}, t("login.password")), password),
    error,
    submit,
  );
  return h("section", { class: "login-wrap" }, form);
}
