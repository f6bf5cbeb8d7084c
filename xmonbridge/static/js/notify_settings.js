// 通話設定(シンプル通話), 通話設定(ボタン操作付き) and SMS 通知設定 forms: To rows (added, removed
// and, for button calls, moved 「上へ」「下へ」), the custom message, its counter and SMS
// segments, and the account's TwiML Bin URL and From numbers. Every button also works
// without this script (the server re-renders the form), so it only saves round trips.
"use strict";

const CUSTOM = "custom";
// GSM 03.38 basic set and extension table, as in xmonbridge/messages.py.
const GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENDED = "^{}\\[~]|€\f";

// How many SMS segments Twilio bills for text (GSM-7: 160/153, UCS-2: 70/67); messages.sms_segments.
function smsSegments(text) {
  if (!text) return 0;
  const chars = Array.from(text);
  let units;
  let single;
  let multi;
  if (chars.every((c) => GSM_BASIC.includes(c) || GSM_EXTENDED.includes(c))) {
    units = chars.reduce((n, c) => n + (GSM_EXTENDED.includes(c) ? 2 : 1), 0);
    [single, multi] = [160, 153];
  } else {
    units = text.length; // UTF-16 code units, like UCS-2 on the wire
    [single, multi] = [70, 67];
  }
  return units <= single ? 1 : Math.ceil(units / multi);
}

// Characters as Python's len() counts them (code points).
function charCount(text) {
  return Array.from(text).length;
}

function initSettingForm(form) {
  const accounts = JSON.parse(document.getElementById("account-data").textContent);
  const account = form.querySelector("#account_id");
  const binUrl = form.querySelector("#twiml_bin_url");
  const fromNumber = form.querySelector("#from_number");
  const rows = form.querySelector("#recipient-rows");
  const template = form.querySelector("#message_template");
  const customGroup = form.querySelector("#custom-message-group");
  const custom = form.querySelector("#custom_message");
  const count = form.querySelector("#custom-message-count [data-count]");
  const segments = form.querySelector("#sms-segments [data-segments]");
  const testTo = form.querySelector("#test_to");

  function showAccount() {
    const data = accounts[account.value] || { bin_url: "", numbers: [] };
    if (binUrl) binUrl.value = data.bin_url;
    const chosen = fromNumber.value;
    fromNumber.replaceChildren();
    if (data.numbers.length === 0) {
      // Read but empty is not the same as never read.
      fromNumber.add(new Option(data.empty || "(未取得です。「再取得」を押してください)", ""));
    }
    const noSmsNumbers = form.querySelector("#no-sms-numbers");
    if (noSmsNumbers) noSmsNumbers.hidden = !data.empty;
    for (const [value, label] of data.numbers) {
      fromNumber.add(new Option(label, value, false, value === chosen));
    }
  }

  function showMessage() {
    const isCustom = template.value === CUSTOM;
    customGroup.hidden = !isCustom;
    count.textContent = charCount(custom.value);
    if (segments) {
      const option = template.selectedOptions[0];
      segments.textContent = isCustom ? smsSegments(custom.value) : (option && option.dataset.segments) || "";
    }
  }

  // Rows are recipients-0, recipients-1, … in page order, so the server keeps that order.
  function renumberRows() {
    const all = rows.querySelectorAll(".recipient-row");
    all.forEach((row, index) => {
      const select = row.querySelector("select");
      select.name = select.id = `recipients-${index}`;
      const label = row.querySelector("label");
      label.htmlFor = select.id;
      label.textContent = index === 0 ? "宛先の電話番号(To)" : `宛先の電話番号(To) ${index + 1}`;
      row.querySelector("[data-remove-row]").value = index;
      for (const move of row.querySelectorAll("[data-move-row]")) {
        move.value = index;
        move.disabled = move.dataset.moveRow === "-1" ? index === 0 : index === all.length - 1;
      }
    });
  }

  function addRow() {
    const row = rows.querySelector(".recipient-row").cloneNode(true);
    row.querySelectorAll(".invalid-feedback").forEach((error) => error.remove());
    const select = row.querySelector("select");
    select.classList.remove("is-invalid");
    select.removeAttribute("aria-invalid");
    select.value = "";
    const warning = row.querySelector("[data-mobile-warning]");
    if (warning) warning.hidden = true;
    rows.append(row);
    renumberRows();
    select.focus();
  }

  function removeRow(row) {
    if (rows.querySelectorAll(".recipient-row").length > 1) {
      row.remove();
      renumberRows();
    } else {
      row.querySelector("select").value = "";
    }
  }

  // 「上へ」/「下へ」: swap the row with its neighbour; focus stays on a button of the moved row.
  function moveRow(row, step) {
    const neighbour = step < 0 ? row.previousElementSibling : row.nextElementSibling;
    if (!neighbour) return;
    if (step < 0) neighbour.before(row);
    else neighbour.after(row);
    renumberRows();
    const [up, down] = row.querySelectorAll("[data-move-row]");
    const pressed = step < 0 ? up : down;
    (pressed.disabled ? (step < 0 ? down : up) : pressed).focus();
  }

  // The test's destination is one of the To rows as they are now.
  function fillTestTo() {
    const chosen = testTo.value;
    const seen = new Set();
    testTo.replaceChildren();
    for (const select of rows.querySelectorAll("select")) {
      const option = select.selectedOptions[0];
      if (!select.value || seen.has(select.value)) continue;
      seen.add(select.value);
      testTo.add(new Option(option.text, select.value, false, select.value === chosen));
    }
  }

  form.addEventListener("click", (event) => {
    const add = event.target.closest("[data-add-row]");
    // At the limit the button submits as without scripts, and the server explains why.
    if (add && rows.querySelectorAll(".recipient-row").length < Number(add.dataset.maxRows)) {
      event.preventDefault();
      addRow();
    }
    const remove = event.target.closest("[data-remove-row]");
    if (remove) {
      event.preventDefault();
      removeRow(remove.closest(".recipient-row"));
    }
    const move = event.target.closest("[data-move-row]");
    if (move) {
      event.preventDefault();
      moveRow(move.closest(".recipient-row"), Number(move.dataset.moveRow));
    }
  });
  // SMS: show only the field of the chosen sender kind.
  const senderKinds = form.querySelectorAll("[data-sender-kind]");
  function showSender() {
    const checked = form.querySelector("[data-sender-kind]:checked");
    if (!checked) return;
    form.querySelectorAll("[data-sender-group]").forEach((group) => {
      group.hidden = group.dataset.senderGroup !== checked.value;
    });
  }
  senderKinds.forEach((radio) => radio.addEventListener("change", showSender));
  showSender();

  // SMS: warn beside a recipient whose number is not a mobile one.
  function showMobileWarning(select) {
    const warning = select.closest(".recipient-row").querySelector("[data-mobile-warning]");
    if (!warning) return;
    const option = select.selectedOptions[0];
    warning.hidden = !(option && option.dataset.mobile === "0");
  }
  rows.addEventListener("change", (event) => {
    if (event.target.matches("select")) showMobileWarning(event.target);
  });

  account.addEventListener("change", showAccount);
  // The message and the test: not on the 通話設定(ボタン操作付き) form.
  if (template) {
    template.addEventListener("change", showMessage);
    custom.addEventListener("input", showMessage);
    showMessage();
  }
  // The server renders an empty From list as an empty box: say why (never read, or none).
  if (fromNumber.options.length === 0) showAccount();
  const modal = document.getElementById("test-modal");
  if (modal) {
    modal.addEventListener("show.bs.modal", fillTestTo);
    // A refused test leaves its message inside the dialog: open it again.
    if (modal.querySelector(".invalid-feedback") && window.bootstrap) {
      window.bootstrap.Modal.getOrCreateInstance(modal).show();
    }
  }
}

if (typeof document !== "undefined") {
  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("setting-form");
    if (form) initSettingForm(form);
  });
}

if (typeof module !== "undefined") {
  module.exports = { smsSegments, charCount };
}
