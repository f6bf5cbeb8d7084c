// 電話シミュレータ: draws every user's phone from the server's state (polled, no reload) and
// sends what its buttons do: 応答, 切断, and keys ending with #. In live mode nothing rings
// from the server; a button-call setting's call is rehearsed in this page instead. With
// 音声を再生 on, new spoken lines are read out by the browser's speech synthesis (ja-JP).
"use strict";

const POLL_MS = 1500;
const MAX_KEYS = 16;
const STATE_LABELS = { idle: "待機中", ringing: "着信中", talking: "通話中" };
const STATE_BADGES = { idle: "bg-secondary", ringing: "bg-warning text-dark", talking: "bg-success" };

function initPhoneSimulator(root) {
  const simulated = root.dataset.simulated === "true";
  const list = document.getElementById("phones");
  const template = document.getElementById("phone-template");
  const empty = document.getElementById("phones-empty");
  const problem = document.getElementById("phones-error");
  const speech = document.getElementById("phone-speech");
  const cards = new Map(); // user id -> card element
  const typed = new Map(); // user id -> keys pressed before #
  const spoken = new Map(); // call id -> lines already seen (read out when sound is on)
  let phones = [];
  let sequence = 0;
  let applied = 0;

  // Live mode: the rehearsed call of each phone (user id -> call), kept in this page only.
  const rehearsal = { setting: null, calls: new Map(), count: 0 };
  const settingsData = document.getElementById("rehearsal-data");
  const settings = settingsData ? JSON.parse(settingsData.textContent) : [];

  if (!("speechSynthesis" in window)) {
    speech.disabled = true;
    document.getElementById("phone-speech-help").textContent = "このブラウザは音声合成に対応していません。";
  }
  // The switch is remembered in this browser, so it stays on from page to page.
  speech.checked = !speech.disabled && window.localStorage.getItem("phone-speech") === "on";
  speech.addEventListener("change", () => {
    window.localStorage.setItem("phone-speech", speech.checked ? "on" : "off");
    if (!speech.checked && "speechSynthesis" in window) window.speechSynthesis.cancel();
  });

  function say(line) {
    if (!speech.checked || speech.disabled || line.kind !== "say") return;
    const utterance = new SpeechSynthesisUtterance(line.text);
    utterance.lang = "ja-JP";
    window.speechSynthesis.speak(utterance);
  }

  function showProblem(message) {
    problem.textContent = message || "";
    problem.hidden = !message;
  }

  async function post(url, fields) {
    const body = new URLSearchParams(fields);
    body.set("csrf_token", root.dataset.csrf);
    const response = await fetch(url, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": root.dataset.csrf, Accept: "application/json" },
    });
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = { error: `サーバーの応答を読めませんでした(HTTP ${response.status})。` };
    }
    return { ok: response.ok, data };
  }

  // --- drawing ---

  function cardFor(phone) {
    let card = cards.get(phone.user_id);
    if (card) return card;
    card = template.content.firstElementChild.cloneNode(true);
    const keysId = `phone-keys-${phone.user_id}`;
    card.querySelector(".phone-keys").id = keysId;
    card.querySelector(".phone-keys-label").htmlFor = keysId;
    card.dataset.userId = String(phone.user_id);
    cards.set(phone.user_id, card);
    list.append(card);
    return card;
  }

  function lineItem(line) {
    const item = document.createElement("li");
    item.className = `phone-line line-${line.kind}`;
    if (line.kind === "say") {
      const voice = document.createElement("span");
      voice.className = "line-voice fw-bold";
      voice.textContent = `${line.voice}: `;
      item.append("「", voice, line.text, "」");
    } else {
      item.textContent = line.text;
    }
    return item;
  }

  function draw(phone) {
    const card = cardFor(phone);
    const call = phone.call;
    const state = phone.state;
    card.querySelector(".phone-card").dataset.state = state;
    card.querySelector(".phone-name").textContent = phone.name;
    card.querySelector(".phone-number").textContent = phone.number;
    const badge = card.querySelector(".phone-state");
    badge.textContent = STATE_LABELS[state];
    badge.className = `badge phone-state ${STATE_BADGES[state]}`;

    const caller = card.querySelector(".phone-caller");
    if (call) {
      const from = call.from ? `${call.from} から` : "";
      const setting = call.setting ? `(${call.setting})` : "";
      caller.textContent = `${call.at} ${from}着信${setting}${call.ended ? ` — ${call.ended}` : ""}`;
    } else {
      caller.textContent = "着信はありません。";
    }
    card.querySelector(".phone-answer").disabled = state !== "ringing";
    card.querySelector(".phone-hangup").disabled = state === "idle";

    const lines = call ? call.lines : [];
    card.querySelector(".phone-lines").replaceChildren(...lines.map(lineItem));
    if (call) {
      const seen = spoken.get(call.id);
      if (seen === undefined) {
        spoken.set(call.id, lines.length); // already said before this page saw it
      } else if (lines.length > seen) {
        lines.slice(seen).forEach(say);
        spoken.set(call.id, lines.length);
      }
    }

    const listening = state === "talking" && Boolean(call && call.waiting_for_keys);
    if (!listening) typed.delete(phone.user_id);
    card.querySelector(".phone-keys").value = typed.get(phone.user_id) || "";
    for (const key of card.querySelectorAll(".phone-key")) key.disabled = !listening;

    const messages = card.querySelector(".phone-messages");
    const items = phone.messages.map((message) => {
      const item = document.createElement("li");
      item.className = "phone-message border-start border-3 ps-2 mb-2";
      const head = document.createElement("div");
      head.className = "text-muted";
      head.textContent = `${message.at} ${message.from}`;
      const body = document.createElement("div");
      body.className = "phone-message-body";
      body.textContent = message.body;
      item.append(head, body);
      return item;
    });
    if (items.length === 0) {
      const none = document.createElement("li");
      none.className = "text-muted";
      none.textContent = "SMS はありません。";
      items.push(none);
    }
    messages.replaceChildren(...items);
  }

  function withRehearsal(phone) {
    const call = rehearsal.calls.get(phone.user_id);
    if (!call) return phone;
    return { ...phone, state: call.state, call };
  }

  function drawAll() {
    for (const phone of phones) draw(withRehearsal(phone));
    empty.hidden = phones.length > 0;
  }

  function apply(requested, data) {
    if (requested < applied || !data.phones) return;
    applied = requested;
    phones = data.phones;
    // Each poll brings a fresh CSRF token, so a page open for hours still works.
    if (data.csrf) root.dataset.csrf = data.csrf;
    drawAll();
  }

  async function poll() {
    const requested = ++sequence;
    try {
      const response = await fetch(root.dataset.stateUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        apply(requested, await response.json());
        if (problem.dataset.fromPoll) showProblem("");
        delete problem.dataset.fromPoll;
      } else {
        showProblem(`状態を取得できませんでした(HTTP ${response.status})。`);
        problem.dataset.fromPoll = "1";
      }
    } catch (error) {
      showProblem("サーバーに接続できません。");
      problem.dataset.fromPoll = "1";
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  // --- simulated calls (simulate mode) ---

  async function act(phone, what, fields) {
    const requested = ++sequence;
    const { ok, data } = await post(`${root.dataset.callsUrl}${phone.call.id}/${what}`, fields || {});
    showProblem(ok ? "" : data.error);
    apply(requested, data);
  }

  // --- rehearsal (live mode) ---

  function ring(userId) {
    rehearsal.count += 1;
    rehearsal.calls.set(userId, {
      id: `rehearsal-${rehearsal.count}`,
      state: "ringing",
      from: "",
      setting: `リハーサル: ${rehearsal.setting.name}`,
      at: new Date().toLocaleString("sv-SE"), // 2026-04-01 10:23:45, like the server's times
      ended: "",
      waiting_for_keys: false,
      lines: [],
    });
  }

  function endRehearsed(call, how) {
    call.state = "idle";
    call.ended = how;
    call.waiting_for_keys = false;
  }

  async function rehearse(userId, keys) {
    const call = rehearsal.calls.get(userId);
    const fields = { setting_id: rehearsal.setting.id, user_id: userId };
    if (keys !== null) {
      fields.keys = keys;
      call.lines.push({ kind: "keys", text: `押したボタン: ${keys}#`, voice: "" });
      call.waiting_for_keys = false;
    }
    drawAll();
    const { ok, data } = await post(`${root.dataset.rehearsalUrl}${keys === null ? "answer" : "keys"}`, fields);
    showProblem(ok ? "" : data.error);
    if (!ok) return;
    call.state = "talking";
    call.lines.push(...data.lines);
    call.waiting_for_keys = data.waiting_for_keys;
    if (!data.waiting_for_keys) {
      endRehearsed(call, "リハーサル終了");
      if (data.next_user_id !== null && data.next_user_id !== undefined) ring(data.next_user_id);
    }
    drawAll();
  }

  const form = document.getElementById("rehearsal-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const id = Number(document.getElementById("rehearsal-setting").value);
      rehearsal.setting = settings.find((s) => s.id === id);
      rehearsal.calls.clear();
      if (!rehearsal.setting || rehearsal.setting.user_ids.length === 0) {
        showProblem("この通話設定には、連絡先電話番号のある宛先がありません。");
        drawAll();
        return;
      }
      showProblem("");
      const first = rehearsal.setting.rotation ? rehearsal.setting.user_ids.slice(0, 1) : rehearsal.setting.user_ids;
      first.forEach(ring);
      drawAll();
    });
  }

  // --- the buttons of every phone ---

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || button.disabled) return;
    const card = button.closest("[data-user-id]");
    const userId = Number(card.dataset.userId);
    const phone = phones.find((p) => p.user_id === userId);
    if (!phone) return;
    const rehearsed = rehearsal.calls.get(userId);
    if (button.classList.contains("phone-answer")) {
      if (rehearsed) rehearse(userId, null);
      else if (phone.call) act(phone, "answer");
    } else if (button.classList.contains("phone-hangup")) {
      if (rehearsed) {
        endRehearsed(rehearsed, rehearsed.state === "ringing" ? "着信拒否" : "切断");
        drawAll();
      } else if (phone.call) {
        act(phone, "hangup");
      }
    } else if (button.classList.contains("phone-key")) {
      const key = button.dataset.key;
      const keys = typed.get(userId) || "";
      if (key !== "#") {
        typed.set(userId, (keys + key).slice(0, MAX_KEYS));
        card.querySelector(".phone-keys").value = typed.get(userId);
        return;
      }
      typed.delete(userId);
      card.querySelector(".phone-keys").value = "";
      if (rehearsed) rehearse(userId, keys);
      else if (phone.call) act(phone, "keys", { keys });
    }
  });

  if (!simulated) drawAll();
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("phone-simulator");
  if (root) initPhoneSimulator(root);
});
