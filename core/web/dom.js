// Shared by every page (admin, desktop, wallboard): DOM building, the session, the REST client and the error
// bar. Page-specific parts live beside each page (desktop.dom.js adds the socket, the header and the login
// form of the desktop and the wallboard).
//
// Everything the server sends is data, never markup: elements are built with createElement/textContent (`h`),
// so a customer's `<img onerror=…>` or a chat message `<script>…</script>` shows as text.

import { adoptUserLanguage, chooseLanguage, has, t } from "./i18n.js";

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

/** Replace `element`'s children; arrays are flattened and null/undefined/false skipped (optional parts). */
export function fill(element, ...children) {
  element.replaceChildren(
    ...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false),
  );
  return element;
}

export const byId = (id) => document.getElementById(id);

export function pad(number) {
  return String(number).padStart(2, "0");
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
  constructor(status, code, detail, retryAfter = null) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
    this.handled = false; // true once the session ended because of it: callers show nothing more
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text.slice(0, 300) };
  }
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
  const data = response.status === 204 ? null : await readBody(response);
  if (response.ok) return data;
  const error = new ApiError(
    response.status,
    data?.code || `http_${response.status}`,
    data?.detail || response.statusText,
    response.headers.get("Retry-After"),
  );
  // only the session that sent the request ends: a late 401 must not log out a newer login
  if (response.status === 401 && token && token === session.token) {
    endSession(error);
    error.handled = true;
  }
  throw error;
}

/** The text to show for an API or socket error: ours for codes we know, else the server's `detail`. */
export function errorMessage(error) {
  const code = error?.code;
  if (code === "login_locked") {
    const seconds = Number.parseInt(error.retryAfter, 10);
    return Number.isFinite(seconds) ? t("error.login_locked", { seconds }) : t("error.login_locked_later");
  }
  if (code === "validation_failed") return t("error.validation_failed", { detail: error.detail });
  if (code && has(`error.${code}`)) return t(`error.${code}`);
  return error?.detail || code || String(error?.message || error);
}

// -------------------------------------------------------------------------------------------- session

const sessionEndListeners = new Set();

/** Call `listener(reason)` when the session ends (logout: no reason; an expired token: its `ApiError`). */
export function onSessionEnd(listener) {
  sessionEndListeners.add(listener);
}

export function startSession(result) {
  session.token = result.token;
  session.user = result.user;
  writeSession(TOKEN_KEY, result.token);
  adoptUserLanguage(result.user);
}

export function endSession(reason = null) {
  session.token = null;
  session.user = null;
  writeSession(TOKEN_KEY, null);
  for (const listener of sessionEndListeners) listener(reason);
}

/** The stored token's user, or null: none stored, or it could not be checked. A token the server refused
 * ends the session; any other failure (the network, the server) drops the token and shows why. */
export async function restoreSession() {
  if (!session.token) return null;
  try {
    session.user = await api("GET", "/api/auth/me");
  } catch (error) {
    if (!error?.handled) {
      errorBar.show(error);
      session.token = null;
      writeSession(TOKEN_KEY, null);
    }
    return null;
  }
  adoptUserLanguage(session.user);
  return session.user;
}

export async function logout() {
  try {
    await api("POST", "/api/auth/logout");
  } catch {
    // the token is dropped here whatever the server said
  }
  endSession();
}

// ------------------------------------------------------------------------------------------ error bar

export const errorBar = {
  error: null,
  show(error) {
    if (error?.handled) return;
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
