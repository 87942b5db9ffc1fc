// Shared by the agent desktop and the supervisor wallboard: what every page shares (dom.js: DOM building, the
// session, the REST client, the error bar) plus the Socket.IO connection, the header and the login form.
//
// Everything the server sends is data, never markup: elements are built with createElement/textContent (`h`),
// so a customer's `<img onerror=…>` or a chat message `<script>…</script>` shows as text.

import { api, byId, endSession, errorBar, errorMessage, h, pad, session, startSession } from "./dom.js";
import { language, t } from "./i18n.js";
import { io } from "./vendor/socket.io.esm.min.js";

export {
  ApiError,
  api,
  byId,
  endSession,
  errorBar,
  errorMessage,
  fill,
  h,
  logout,
  onSessionEnd,
  restoreSession,
  session,
  startSession,
  TOKEN_KEY,
  wireChrome,
} from "./dom.js";

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
