// Copy buttons and delete confirmations; no framework, served locally.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copyTarget);
  const text = source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    // Plain-http pages have no clipboard API: select the text and use the old command.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  const original = button.textContent;
  button.textContent = "コピーしました";
  setTimeout(() => { button.textContent = original; }, 2000);
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
