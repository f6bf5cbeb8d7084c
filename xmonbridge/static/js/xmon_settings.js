// X-MON 設定: show only the fields of the chosen 認知済みの通知先. Without this script every
// field is shown; acknowledgements only ever use the fields of the chosen one.
"use strict";

function showAckGroups(form) {
  const chosen = form.querySelector("input[data-ack-mode]:checked");
  for (const group of form.querySelectorAll("[data-ack-group]")) {
    // A field with an error stays visible, whatever is chosen.
    const invalid = group.querySelector(".is-invalid") !== null;
    group.hidden = !invalid && (!chosen || group.dataset.ackGroup !== chosen.value);
  }
}

const xmonSettings = document.getElementById("xmon-settings");
if (xmonSettings) {
  showAckGroups(xmonSettings);
  xmonSettings.addEventListener("change", (event) => {
    if (event.target.matches("input[data-ack-mode]")) showAckGroups(xmonSettings);
  });
}
