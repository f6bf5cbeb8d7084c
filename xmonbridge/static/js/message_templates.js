// メッセージテンプレート form: character counters of the two messages, the From numbers of the
// chosen account in the 「テスト通話」 dialog, and the dialog opened again when the server
// refused a test. Every button also works without this script.
"use strict";

// Characters as Python's len() counts them (code points), like the server's 4,096 limit.
function charCount(text) {
  return Array.from(text).length;
}

function initTemplateForm(form) {
  for (const counter of form.querySelectorAll("[data-count-for]")) {
    const field = document.getElementById(counter.dataset.countFor);
    const max = Number(counter.dataset.max);
    const show = () => {
      const count = charCount(field.value);
      counter.querySelector("[data-count]").textContent = count.toLocaleString("en-US");
      counter.classList.toggle("text-danger", count > max);
      counter.classList.toggle("text-muted", count <= max);
    };
    field.addEventListener("input", show);
    show();
  }

  const account = form.querySelector("#test_account_id");
  const fromNumber = form.querySelector("#test_from");
  if (account && fromNumber) {
    const accounts = JSON.parse(document.getElementById("account-data").textContent);
    account.addEventListener("change", () => {
      const numbers = accounts[account.value] || [];
      fromNumber.replaceChildren();
      if (numbers.length === 0) fromNumber.add(new Option("(未取得です。「再取得」を押してください)", ""));
      for (const [value, label] of numbers) fromNumber.add(new Option(label, value));
    });
  }

  const modal = document.getElementById("test-modal");
  if (modal && modal.hasAttribute("data-reopen") && window.bootstrap) {
    window.bootstrap.Modal.getOrCreateInstance(modal).show();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("template-form");
  if (form) initTemplateForm(form);
});
