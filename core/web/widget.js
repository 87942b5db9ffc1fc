/*
 * 汇流 Huiliu web chat widget. Embed on any page with one tag:
 *
 *   <script src="https://support.example.com/static/widget.js" async></script>
 *
 * Optional attributes: data-lang="zh|en" (default: the browser's language), data-title="…".
 * "Verify" links the visitor to the customer with a phone number (a code by SMS) or an email address (a code
 * by email) they prove is theirs; the server checks the code.
 * Everything it draws lives in a shadow root (the host page's CSS cannot break it, ours cannot leak), text is
 * always set with textContent (nothing a visitor or agent types is ever parsed as HTML), and it talks only to
 * the server it was loaded from: Socket.IO namespace /visitor on /chat/socket.io, and /api/webchat/*.
 *
 * Reliability: every message gets a client id and waits in localStorage until the server acknowledges it;
 * after a reconnect the waiting ones are sent again (the server stores each client id once) and the widget
 * asks for the history after the last event it saw, so nothing is lost or shown twice.
 */
(function () {
  "use strict";
  if (window.__huiliuChat) return;
  window.__huiliuChat = true;

  var script = document.currentScript;
  var base = new URL(script.src, location.href).origin;
  var store = "huiliu-chat:" + base + ":";

  var TEXT = {
    zh: {
      launcher: "在线客服",
      title: "在线客服",
      placeholder: "请输入您的问题…",
      send: "发送",
      attach: "发送文件",
      human: "转人工",
      end: "结束",
      typing: "客服正在输入…",
      offline: "连接中断，正在重连…",
      welcome: "您好！请问有什么可以帮您？",
      failed: "发送失败",
      tooLarge: "文件太大（最多 {limit} 字节）",
      badType: "不支持这种文件（仅图片、PDF、文本）",
      tooLong: "消息太长（最多 {limit} 字）",
      ended: "对话已结束，感谢您的咨询。",
      you: "我",
      bot: "智能客服",
      agent: "客服",
      joined: "客服已接入",
      close: "关闭",
      verify: "验证身份",
      verifyIntro: "验证手机号或邮箱后，我们能看到您以前的订单和工单，不用重复说明。",
      verifyBy: "验证方式",
      byPhone: "手机",
      byEmail: "邮箱",
      phone: "手机号",
      email: "邮箱地址",
      sendCode: "发送验证码",
      code: "短信验证码",
      codeEmail: "邮件中的验证码",
      confirm: "验证",
      codeSent: "验证码已发送至 {to}，10 分钟内有效。",
      verified: "手机号已验证，您的记录已关联。",
      verifiedEmail: "邮箱已验证，您的记录已关联。",
      phone_required: "请输入手机号",
      invalid_phone: "手机号格式不正确",
      email_required: "请输入邮箱地址",
      invalid_email: "邮箱地址格式不正确",
      verification_rate_limited: "验证码刚发送过，请一分钟后再试",
      verification_number_limited: "这个号码一小时内收到的验证码太多，请稍后再试",
      verification_email_limited: "这个邮箱一小时内收到的验证码太多，请稍后再试",
      email_verification_unavailable: "暂时不能用邮箱验证，请改用手机号",
      email_send_failed: "验证码邮件没能发出，请稍后再试",
      code_required: "请输入验证码",
      verification_failed: "验证码不正确，还可以再试 {attempts} 次",
      verification_locked: "错误次数过多，请重新获取验证码",
      no_verification: "验证码已过期，请重新获取",
    },
    en: {
      launcher: "Chat with us",
      title: "Customer service",
      placeholder: "Type your question…",
      send: "Send",
      attach: "Send a file",
      human: "Talk to a person",
      end: "End",
      typing: "The agent is typing…",
      offline: "Connection lost, reconnecting…",
      welcome: "Hello! How can we help you?",
      failed: "Not sent",
      tooLarge: "File too large (at most {limit} bytes)",
      badType: "This kind of file is not supported (images, PDF, text only)",
      tooLong: "Message too long (at most {limit} characters)",
      ended: "The chat has ended. Thank you!",
      you: "Me",
      bot: "Assistant",
      agent: "Agent",
      joined: "An agent has joined",
      close: "Close",
      verify: "Verify it's me",
      verifyIntro: "Verify your phone number or email address so that we see your earlier orders and tickets — no need to repeat yourself.",
      verifyBy: "Verify by",
      byPhone: "Phone",
      byEmail: "Email",
      phone: "Phone number",
      email: "Email address",
      sendCode: "Send code",
      code: "Code from the SMS",
      codeEmail: "Code from the email",
      confirm: "Verify",
      codeSent: "We sent a code to {to}; it is valid for 10 minutes.",
      verified: "Your phone number is verified and your history is linked.",
      verifiedEmail: "Your email address is verified and your history is linked.",
      phone_required: "Please enter your phone number",
      invalid_phone: "That is not a valid phone number",
      email_required: "Please enter your email address",
      invalid_email: "That is not a valid email address",
      verification_rate_limited: "A code was just sent; please try again in a minute",
      verification_number_limited: "Too many codes went to this number this hour; please try again later",
      verification_email_limited: "Too many codes went to this address this hour; please try again later",
      email_verification_unavailable: "Email verification is not available now; please use your phone number",
      email_send_failed: "The code email could not be sent; please try again later",
      code_required: "Please enter the code",
      verification_failed: "Wrong code; {attempts} tries left",
      verification_locked: "Too many wrong codes; please ask for a new one",
      no_verification: "The code has expired; please ask for a new one",
    },
  };
  var lang = script.getAttribute("data-lang") ||
    ((navigator.language || "zh").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
  if (!TEXT[lang]) lang = "zh";
  function t(key, values) {
    var text = TEXT[lang][key] || key;
    Object.keys(values || {}).forEach(function (name) { text = text.replace("{" + name + "}", values[name]); });
    return text;
  }

  function load(key, fallback) {
    try { var raw = localStorage.getItem(store + key); return raw === null ? fallback : JSON.parse(raw); }
    catch (error) { return fallback; }
  }
  function save(key, value) {
    try { localStorage.setItem(store + key, JSON.stringify(value)); } catch (error) { /* private mode */ }
  }

  // ------------------------------------------------------------------------------------------- the DOM
  var host = document.createElement("div");
  host.id = "huiliu-chat";
  var root = host.attachShadow({ mode: "open" });
  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = base + "/static/widget.css";
  root.appendChild(css);

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  var launcher = el("button", "launcher", t("launcher"));
  launcher.type = "button";
  launcher.setAttribute("part", "launcher");
  var panel = el("section", "panel");
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  var header = el("header", "header");
  var title = el("span", "title", script.getAttribute("data-title") || t("title"));
  var humanButton = el("button", "human", t("human"));
  var endButton = el("button", "end", t("end"));
  var verifyButton = el("button", "verify", t("verify"));
  var closeButton = el("button", "close", "×");
  closeButton.setAttribute("aria-label", t("close"));
  [humanButton, verifyButton, endButton, closeButton].forEach(function (b) { b.type = "button"; });
  header.append(title, humanButton, verifyButton, endButton, closeButton);
  var status = el("div", "status");
  status.hidden = true;
  var list = el("ol", "messages");
  list.setAttribute("aria-live", "polite");
  var typing = el("div", "typing", t("typing"));
  typing.hidden = true;
  var form = el("form", "composer");
  var input = el("textarea", "input");
  input.rows = 2;
  input.placeholder = t("placeholder");
  var file = el("input", "file");
  file.type = "file";
  file.accept = "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain";
  file.hidden = true;
  var attach = el("button", "attach", "📎");
  attach.type = "button";
  attach.title = t("attach");
  var send = el("button", "send", t("send"));
  send.type = "submit";
  form.append(attach, input, send, file);
  // Verification: a phone number (SMS code) or an email address (code by email) -> the code -> linked to
  // the customer with that number or address (linking.py).
  var verifyForm = el("form", "verify-form");
  verifyForm.hidden = true;
  verifyForm.noValidate = true;  // the server judges the address; a hidden invalid field must not block Verify
  var verifyIntro = el("p", "verify-intro", t("verifyIntro"));
  var verifyBy = el("fieldset", "verify-by");
  verifyBy.appendChild(el("legend", "verify-by-legend", t("verifyBy")));
  var byRadios = ["phone", "email"].map(function (kind) {
    var label = el("label", "verify-by-" + kind);
    var radio = el("input");
    radio.type = "radio";
    radio.name = "verify-by";
    radio.value = kind;
    radio.checked = kind === "phone";
    label.append(radio, el("span", "", t(kind === "phone" ? "byPhone" : "byEmail")));
    verifyBy.appendChild(label);
    return radio;
  });
  var phoneInput = el("input", "verify-phone");
  phoneInput.type = "tel";
  phoneInput.autocomplete = "tel";
  phoneInput.maxLength = 32;
  phoneInput.placeholder = t("phone");
  phoneInput.setAttribute("aria-label", t("phone"));
  var emailInput = el("input", "verify-email");
  emailInput.type = "email";
  emailInput.autocomplete = "email";
  emailInput.maxLength = 254;
  emailInput.placeholder = t("email");
  emailInput.setAttribute("aria-label", t("email"));
  emailInput.hidden = true;
  var sendCodeButton = el("button", "verify-send", t("sendCode"));
  sendCodeButton.type = "button";
  var codeInput = el("input", "verify-code");
  codeInput.inputMode = "numeric";
  codeInput.autocomplete = "one-time-code";
  codeInput.maxLength = 8;
  codeInput.placeholder = t("code");
  codeInput.setAttribute("aria-label", t("code"));
  codeInput.hidden = true;
  var confirmButton = el("button", "verify-confirm", t("confirm"));
  confirmButton.type = "submit";
  confirmButton.hidden = true;
  var verifyStatus = el("p", "verify-status");
  verifyStatus.setAttribute("aria-live", "polite");
  verifyForm.append(
    verifyIntro, verifyBy, phoneInput, emailInput, sendCodeButton, codeInput, confirmButton, verifyStatus
  );
  panel.append(header, status, verifyForm, list, typing, form);
  root.append(launcher, panel);
  (document.body || document.documentElement).appendChild(host);

  // ------------------------------------------------------------------------------------------ state
  var shown = {};          // event id -> true
  var bubbles = {};        // client id -> element still waiting for its ack
  var outbox = load("outbox", []);   // [{client_id, text, attachment_id}]
  var lastId = null;        // the last event shown on this page: a reconnect asks for what came after it
  var socket = null;
  var limits = { max_chars: 2000, max_attachment_bytes: 5 * 1024 * 1024 };  // the server's, once connected

  function newId() {
    var bytes = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function authorName(message) {
    if (message.direction === "in") return t("you");
    if (message.author && message.author.type === "agent") return message.author.name || t("agent");
    if (message.author && message.author.type === "bot") return t("bot");
    return (message.author && message.author.name) || "";
  }

  function bubble(message, pending) {
    var item = el("li", "message " + (message.direction === "in" ? "mine" : "theirs"));
    if (message.author && message.author.type) item.classList.add(message.author.type);
    if (message.kind === "contact.connected") {
      item.className = "message notice";
      item.textContent = t("joined");
      return item;
    }
    item.appendChild(el("span", "who", authorName(message)));
    if (message.text) item.appendChild(el("p", "text", message.text));
    if (message.attachment) {
      var a = message.attachment;
      if (a.url && a.content_type && a.content_type.indexOf("image/") === 0) {
        var img = el("img", "picture");
        img.alt = a.name;
        img.src = base + a.url;
        item.appendChild(img);
      } else if (a.url) {
        var link = el("a", "file-link", a.name);
        link.href = base + a.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        item.appendChild(link);
      } else {
        item.appendChild(el("span", "file-link", a.name));
      }
    }
    if (pending) item.classList.add("pending");
    return item;
  }

  function show(message) {
    if (shown[message.id]) return;
    shown[message.id] = true;
    var waiting = message.client_id && bubbles[message.client_id];
    if (waiting) {
      waiting.replaceWith(bubble(message));
      delete bubbles[message.client_id];
    } else {
      list.appendChild(bubble(message));
    }
    if (message.direction === "out") typing.hidden = true;
    lastId = message.id;
    list.scrollTop = list.scrollHeight;
  }

  function failed(item, error) {
    item.classList.remove("pending");
    item.classList.add("failed");
    var code = error && error.code;
    var text = code === "message_too_long" ? t("tooLong", { limit: error.limit }) : t("failed");
    item.appendChild(el("span", "error", text));
  }

  // --------------------------------------------------------------------------------------- the wire
  function token() {
    var saved = load("token", null);
    if (saved) return Promise.resolve(saved);
    return fetch(base + "/api/webchat/visitors", { method: "POST" }).then(function (response) {
      if (!response.ok) throw new Error("visitor " + response.status);
      return response.json();
    }).then(function (body) { save("token", body.token); return body.token; });
  }

  function loadSocketIo() {
    if (window.__huiliuIo) return Promise.resolve(window.__huiliuIo);
    return new Promise(function (resolve, reject) {
      var previous = window.io;
      var tag = document.createElement("script");
      tag.src = base + "/static/vendor/socket.io.min.js";
      tag.onload = function () {
        window.__huiliuIo = window.io;
        if (previous) window.io = previous; // leave the host page's own socket.io alone
        resolve(window.__huiliuIo);
      };
      tag.onerror = reject;
      document.head.appendChild(tag);
    });
  }

  function deliver(entry) {
    if (!socket || !socket.connected) return;
    socket.timeout(10000).emit("message", entry, function (timeoutError, ack) {
      if (timeoutError) return; // stays in the outbox; resent after the reconnect
      outbox = outbox.filter(function (waiting) { return waiting.client_id !== entry.client_id; });
      save("outbox", outbox);
      if (ack && ack.ok) show(ack.ok);
      else if (bubbles[entry.client_id]) failed(bubbles[entry.client_id], ack && ack.error);
    });
  }

  function connect(retried) {
    return Promise.all([token(), loadSocketIo()]).then(function (ready) {
      socket = ready[1](base + "/visitor", {
        path: "/chat/socket.io",
        auth: { token: ready[0], language: lang },
        transports: ["websocket", "polling"],
      });
      socket.on("connect", function () {
        status.hidden = true;
        socket.emit("history", { after: lastId }, function (answer) {
          if (answer && answer.limits) limits = answer.limits;
          if (answer && answer.ok) answer.ok.forEach(show);
          // the greeting heads every view of the conversation, also after a reload replays it from the server
          if (!list.querySelector(".welcome")) list.insertBefore(el("li", "message notice welcome", t("welcome")), list.firstChild);
          outbox.forEach(deliver);
        });
      });
      socket.on("disconnect", function () { status.textContent = t("offline"); status.hidden = false; });
      socket.on("connect_error", function (error) {
        var code = error && error.data && error.data.code;
        if (code && code.indexOf("visitor_token") === 0 && !retried) {
          socket.close();
          save("token", null);
          connect(true);
        }
      });
      socket.on("message", show);
      socket.on("typing", function (data) { typing.hidden = !(data && data.typing); });
    });
  }

  function submit(text, attachmentId) {
    var entry = { client_id: newId(), text: text };
    if (attachmentId) entry.attachment_id = attachmentId;
    outbox.push(entry);
    save("outbox", outbox);
    var item = bubble({ direction: "in", text: text }, true);
    bubbles[entry.client_id] = item;
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
    deliver(entry);
  }

  // ---------------------------------------------------------------------------------------- controls
  var typingSent = false;
  var typingTimer = null;
  function setTyping(on) {
    if (!socket || typingSent === on) return;
    typingSent = on;
    socket.emit("typing", { typing: on });
  }

  launcher.addEventListener("click", function () {
    panel.hidden = false;
    launcher.hidden = true;
    save("opened", true);
    if (!socket) connect(false);
    input.focus();
  });
  closeButton.addEventListener("click", function () {
    panel.hidden = true;
    launcher.hidden = false;
    save("opened", false);
  });
  humanButton.addEventListener("click", function () { if (socket) socket.emit("handoff", {}); });

  function verifyMessage(text, isError) {
    verifyStatus.textContent = text;
    verifyStatus.classList.toggle("error", !!isError);
  }
  function verifyError(ack) {
    var error = (ack && ack.error) || {};
    var text = TEXT[lang][error.code] ? t(error.code, { attempts: error.attempts_left }) : t("failed");
    verifyMessage(text, true);
  }
  function askSocket(event, data, done, settled) {
    if (!socket || !socket.connected) { verifyMessage(t("offline"), true); if (settled) settled(); return; }
    socket.timeout(10000).emit(event, data, function (timeoutError, ack) {
      if (settled) settled();
      if (timeoutError) { verifyMessage(t("failed"), true); return; }
      if (ack && ack.ok) done(ack.ok); else verifyError(ack);
    });
  }
  var verifyingBy = "phone";   // where the code is asked for: "phone" or "email"
  var codeSentBy = null;       // where the last code went
  function addressInput() { return verifyingBy === "email" ? emailInput : phoneInput; }
  byRadios.forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (!radio.checked) return;
      verifyingBy = radio.value;
      phoneInput.hidden = verifyingBy !== "phone";
      emailInput.hidden = verifyingBy !== "email";
      if (verifyStatus.classList.contains("error")) verifyMessage("", false);
    });
    // Enter on a choice goes on to its field (it would otherwise submit the code form).
    radio.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); addressInput().focus(); }
    });
  });
  verifyButton.addEventListener("click", function () {
    verifyForm.hidden = !verifyForm.hidden;
    if (!verifyForm.hidden) (codeInput.hidden ? addressInput() : codeInput).focus();
  });
  sendCodeButton.addEventListener("click", function () {
    var by = verifyingBy;
    var value = addressInput().value.trim();
    if (!value) { verifyMessage(t(by + "_required"), true); return; }
    sendCodeButton.disabled = true;  // until the server answers: one code per press, yet a fix goes at once
    var data = by === "email" ? { email: value } : { phone: value };
    askSocket("verify_" + by, data, function (ok) {
      codeSentBy = by;
      var label = t(by === "email" ? "codeEmail" : "code");
      codeInput.placeholder = label;
      codeInput.setAttribute("aria-label", label);
      verifyMessage(t("codeSent", { to: ok.sent_to }), false);
      codeInput.hidden = false;
      confirmButton.hidden = false;
      codeInput.focus();
    }, function () { sendCodeButton.disabled = false; });
  });
  [phoneInput, emailInput].forEach(function (field) {
    field.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); sendCodeButton.click(); }
    });
  });
  verifyForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var code = codeInput.value.trim();
    if (!code) { verifyMessage(t("code_required"), true); return; }
    askSocket("verify_code", { code: code }, function () {
      verifyForm.hidden = true;
      verifyButton.hidden = true;
      save("verified", true);
      var verified = t(codeSentBy === "email" ? "verifiedEmail" : "verified");
      list.appendChild(el("li", "message notice verified", verified));
      list.scrollTop = list.scrollHeight;
    });
  });
  if (load("verified", false)) verifyButton.hidden = true;
  endButton.addEventListener("click", function () {
    if (!socket) return;
    socket.emit("close", {}, function () {
      list.appendChild(el("li", "message notice", t("ended")));
      lastId = null;
    });
  });
  input.addEventListener("input", function () {
    setTyping(true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { setTyping(false); }, 3000);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (text.length > limits.max_chars) {
      // Checked here too: a huge paste must not sit in the outbox and be resent after every reconnect.
      list.appendChild(el("li", "message notice error", t("tooLong", { limit: limits.max_chars })));
      return;
    }
    input.value = "";
    setTyping(false);
    submit(text);
  });
  attach.addEventListener("click", function () { file.click(); });
  file.addEventListener("change", function () {
    var chosen = file.files && file.files[0];
    file.value = "";
    if (!chosen) return;
    if (chosen.size > limits.max_attachment_bytes) {
      list.appendChild(el("li", "message notice error", t("tooLarge", { limit: limits.max_attachment_bytes })));
      return;
    }
    token().then(function (visitorToken) {
      return fetch(base + "/api/webchat/attachments?name=" + encodeURIComponent(chosen.name), {
        method: "POST",
        headers: { "X-Visitor-Token": visitorToken },
        body: chosen,
      });
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (result) {
      if (result.ok) { submit("", result.body.id); return; }
      var code = result.body && result.body.code;
      var text = code === "attachment_too_large" ? t("tooLarge", { limit: result.body.limit })
        : code === "attachment_type_not_allowed" ? t("badType") : t("failed");
      list.appendChild(el("li", "message notice error", text));
    });
  });
  if (outbox.length || load("opened", false)) { launcher.click(); }
})();
