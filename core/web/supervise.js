// Live calls on the supervisor wallboard: listen (hear both sides), whisper (only the agent hears you) or
// barge (both hear you) through the web softphone (./softphone.js on the /supervisor socket). The agent is
// told, and every step is in the audit log (server side). Calls come from GET /api/calls every 2 s. While
// supervising a call the panel shows its live transcript (watch_call: what was said so far, then each final
// and the partial being spoken).
//
// Lives in its own <section id="supervise"> under the wallboard so the board's re-renders leave it alone.

import {
  api,
  byId,
  duration,
  errorBar,
  fill,
  h,
  session,
} from "./desktop.dom.js";
import { addTranslations, onLanguageChange, t } from "./i18n.js";
import { Softphone } from "./softphone.js";
import { io } from "./vendor/socket.io.esm.min.js";

addTranslations({
  zh: {
    "live.heading": "通话监听",
    "live.none": "当前没有通话。",
    "live.caller": "主叫",
    "live.called": "被叫",
    "live.since": "时长",
    "live.actions": "操作",
    "live.listen": "监听",
    "live.whisper": "耳语",
    "live.barge": "强插",
    "live.leave": "离开",
    "live.state.listen": "正在监听",
    "live.state.whisper": "正在耳语（仅坐席能听到）",
    "live.state.barge": "已强插（双方都能听到）",
    "live.connecting": "正在连接…",
    "live.transcript": "实时转写",
    "live.transcript.none": "来电者还没有说话。",
  },
  en: {
    "live.heading": "Live calls",
    "live.none": "No calls right now.",
    "live.caller": "Caller",
    "live.called": "Called",
    "live.since": "Duration",
    "live.actions": "Actions",
    "live.listen": "Listen",
    "live.whisper": "Whisper",
    "live.barge": "Barge",
    "live.leave": "Leave",
    "live.state.listen": "Listening",
    "live.state.whisper": "Whispering (only the agent hears you)",
    "live.state.barge": "Barged in (both sides hear you)",
    "live.connecting": "Connecting…",
    "live.transcript": "Live transcript",
    "live.transcript.none": "The caller has not spoken yet.",
  },
});

const audio = document.createElement("audio");
audio.autoplay = true;
audio.hidden = true;
document.body.append(audio);

const live = {
  calls: [],
  phone: null,
  socket: null,
  callId: null,
  mode: null,
  busy: false,
  finals: [], // what the watched call's caller said, oldest first
  partial: "", // what they are saying now
};
window.huiliuSupervise = live; // for tests and diagnostics

function section() {
  let box = byId("supervise");
  if (!box) {
    box = h("section", {
      id: "supervise",
      class: "app card",
      "aria-labelledby": "live-heading",
    });
    document.body.append(box);
  }
  return box;
}

function socket() {
  if (!live.socket) {
    live.socket = io("/supervisor", {
      auth: { token: session.token },
      transports: ["websocket"],
    });
    live.socket.on("transcript", (event) => {
      if (event.body?.call_id !== live.callId) return;
      live.finals.push(event.body.text || "");
      live.partial = "";
      render();
    });
    live.socket.on("transcript.partial", (event) => {
      if (event.call_id !== live.callId) return;
      live.partial = event.text || "";
      render();
    });
  }
  return live.socket;
}

async function watch(callId) {
  live.finals = [];
  live.partial = "";
  const reply = await socket().timeout(5000).emitWithAck("watch_call", { call_id: callId });
  if (reply.ok && live.callId === callId) {
    live.finals = reply.ok.finals.map((event) => event.body.text || "");
  }
}

function unwatch(callId) {
  if (callId) socket().emit("unwatch_call", { call_id: callId });
  live.finals = [];
  live.partial = "";
}

async function supervise(callId, mode) {
  if (live.busy) return;
  live.busy = true;
  render();
  try {
    if (live.phone && live.callId === callId) {
      await live.phone.setMode(mode);
    } else {
      if (live.phone) await live.phone.hangup();
      unwatch(live.callId);
      live.phone = new Softphone(socket(), { audioElement: audio });
      live.callId = callId;
      await live.phone.connect(callId, { mode });
      watch(callId).catch(() => {}); // the call goes on without its transcript
    }
    live.mode = mode;
  } catch (error) {
    errorBar.show(error);
    await leave();
  } finally {
    live.busy = false;
    render();
  }
}

async function leave() {
  if (live.phone) await live.phone.hangup();
  unwatch(live.callId);
  live.phone = null;
  live.callId = null;
  live.mode = null;
  render();
}

function render() {
  const box = section();
  if (!session.token) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const since = (iso) =>
    duration((Date.now() - new Date(iso).getTime()) / 1000);
  const button = (callId, mode) =>
    h(
      "button",
      {
        type: "button",
        class:
          live.callId === callId && live.mode === mode
            ? "button button-go"
            : "button button-quiet",
        "data-call": callId,
        "data-mode": mode,
        "aria-pressed": String(live.callId === callId && live.mode === mode),
        disabled: live.busy ? true : null,
        onclick: () => supervise(callId, mode),
      },
      t(`live.${mode}`),
    );
  fill(
    box,
    h("h2", { id: "live-heading" }, t("live.heading")),
    live.mode
      ? h(
          "p",
          { role: "status", id: "live-state" },
          t(`live.state.${live.mode}`),
        )
      : live.busy
        ? h("p", { role: "status", id: "live-state" }, t("live.connecting"))
        : null,
    live.calls.length === 0
      ? h("p", {}, t("live.none"))
      : h(
          "table",
          { class: "table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["live.caller", "live.called", "live.since", "live.actions"].map(
                (key) => h("th", { scope: "col" }, t(key)),
              ),
            ),
          ),
          h(
            "tbody",
            {},
            live.calls.map((call) =>
              h(
                "tr",
                { "data-call": call.call_id },
                h("td", {}, call.caller || "—"),
                h("td", {}, call.called),
                h("td", {}, since(call.answered_at || call.started_at)),
                h(
                  "td",
                  {},
                  button(call.call_id, "listen"),
                  button(call.call_id, "whisper"),
                  button(call.call_id, "barge"),
                  live.callId === call.call_id
                    ? h(
                        "button",
                        {
                          type: "button",
                          class: "button button-stop",
                          onclick: leave,
                        },
                        t("live.leave"),
                      )
                    : null,
                ),
              ),
            ),
          ),
        ),
    live.callId ? transcript() : null,
  );
}

function transcript() {
  const lines = live.finals.map((text) => h("li", { class: "final" }, text));
  if (live.partial) lines.push(h("li", { class: "partial", "aria-busy": "true" }, live.partial));
  return h(
    "section",
    { id: "live-transcript", "aria-labelledby": "live-transcript-heading", "aria-live": "polite" },
    h("h3", { id: "live-transcript-heading" }, t("live.transcript")),
    lines.length ? h("ol", { class: "transcript" }, lines) : h("p", {}, t("live.transcript.none")),
  );
}

async function refresh() {
  if (session.token) {
    try {
      live.calls = await api("GET", "/api/calls");
      if (
        live.callId &&
        !live.calls.some((call) => call.call_id === live.callId)
      )
        await leave();
    } catch {
      // the wallboard shows connection problems; this panel just keeps the last list
    }
  }
  render();
}

onLanguageChange(render);
setInterval(refresh, 2000);
refresh();
