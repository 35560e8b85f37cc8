// jusinfer developer portal: the copy button. Every page works without this script.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  if (!field) return;
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch (_) {
    // No clipboard API (plain http on another host): select the text for Ctrl+C.
    field.focus();
    field.select();
    copied = document.execCommand && document.execCommand("copy");
  }
  button.textContent = copied ? "Copied" : "Copy";
  if (status) {
    status.textContent = copied
      ? "The key is on the clipboard."
      : "Select the key and copy it with Ctrl+C (⌘C).";
  }
});
// The new key selects itself when focused, for copying by hand.
document.addEventListener("focusin", (event) => {
  if (event.target.id === "new-key") event.target.select();
});
