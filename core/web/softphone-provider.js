// The agent desktop's softphone media: plugs ./softphone.js (browser WebRTC ⇄ the web process ⇄ the call)
// into the desktop page's hook `window.huiliuDesktop.registerMedia(provider)` (see desktop.js).
//
// attach(callId, socket): when the agent's call connects, the browser's microphone goes to the caller and
//   the caller's voice to an <audio> element; detach(callId) when it ends.
// mute(callId, on): stop sending the microphone (the caller hears silence).
// hold(callId, on): put the caller on hold at the telephony worker (POST /api/calls/{id}/hold).
// sendDtmf(callId, digit): a keypad key to the other side, RFC 2833 (POST /api/calls/{id}/dtmf).
// dial(number): call a number out (POST /api/calls/dial); the agent is on the call at once and the page
//   attaches to it as to an answered offer. Resolves to {call_id, number, customer_id, contact_id…}.
// A supervisor's listen / whisper / barge lives on the wallboard (wallboard.js), not here.

import { api, h } from "./desktop.dom.js";
import { addTranslations, onLanguageChange, t } from "./i18n.js";
import { Softphone } from "./softphone.js";

addTranslations({
  zh: {
    "supervision.listen": "主管 {name} 正在监听本通话",
    "supervision.whisper": "主管 {name} 正在对您耳语（客户听不到）",
    "supervision.barge": "主管 {name} 已加入通话（客户能听到）",
  },
  en: {
    "supervision.listen": "Supervisor {name} is listening to this call",
    "supervision.whisper":
      "Supervisor {name} is whispering to you (the customer cannot hear)",
    "supervision.barge":
      "Supervisor {name} has joined the call (the customer hears them)",
  },
});

const audio = document.createElement("audio");
audio.autoplay = true;
audio.id = "softphone-audio";
audio.hidden = true;
document.body.append(audio);

// who supervises the current call, shown above the page (the page's own re-renders leave it alone)
const notice = h("p", {
  id: "supervision-notice",
  class: "supervision-notice",
  role: "status",
  hidden: true,
});
document.body.prepend(notice);
let supervision = null;

function showSupervision() {
  notice.hidden = !supervision || !supervision.mode;
  notice.textContent = notice.hidden
    ? ""
    : t(`supervision.${supervision.mode}`, { name: supervision.supervisor });
}
onLanguageChange(showSupervision);

let phone = null;
let watched = null;

const provider = {
  async attach(callId, socket) {
    if (phone && phone.callId === callId && phone.connected) return;
    if (phone) await phone.hangup();
    if (watched !== socket) {
      watched = socket;
      socket.on("supervision", (event) => {
        if (phone && event.call_id === phone.callId) {
          supervision = event;
          showSupervision();
        }
      });
    }
    supervision = null;
    showSupervision();
    phone = new Softphone(socket, { audioElement: audio });
    await phone.connect(callId);
  },
  async detach(callId) {
    if (phone && (!callId || phone.callId === callId)) {
      await phone.hangup();
      phone = null;
      supervision = null;
      showSupervision();
    }
  },
  async mute(callId, on) {
    if (phone && phone.callId === callId) phone.mute(on);
  },
  async hold(callId, on) {
    await api("POST", `/api/calls/${encodeURIComponent(callId)}/hold`, {
      json: { on },
    });
    if (phone && phone.callId === callId) phone.mute(on);
  },
  async sendDtmf(callId, digits) {
    await api("POST", `/api/calls/${encodeURIComponent(callId)}/dtmf`, {
      json: { digits },
    });
  },
  async dial(number) {
    return api("POST", "/api/calls/dial", { json: { number } });
  },
  // for tests and diagnostics: what the agent hears (RMS 0..1) and the media connection's state
  level: () => (phone ? phone.level() : 0),
  spectrum: (frequencies) =>
    phone ? phone.spectrum(frequencies) : frequencies.map(() => -Infinity),
  state: () => (phone && phone.pc ? phone.pc.connectionState : "idle"),
  callId: () => (phone ? phone.callId : null),
};

function register() {
  if (window.huiliuDesktop) window.huiliuDesktop.registerMedia(provider);
  else setTimeout(register, 50);
}

window.huiliuSoftphone = provider;
register();
