// Copy buttons: <button data-copy="ID" hidden> copies the text of the element #ID.
// A static file, so the Content-Security-Policy keeps script-src 'self' and no inline script.
// The buttons stay hidden without this script: the text can still be selected by hand.
"use strict";

(function () {
  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Without the Clipboard API (an http:// page that is not localhost, an old browser):
  // select the text and ask for the copy command; the selection stays, to copy by hand.
  function copyBySelection(element) {
    selectText(element);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  function say(button, words) {
    button.textContent = words;
    window.setTimeout(function () {
      button.textContent = button.dataset.label;
    }, 2000);
  }

  async function copy(button) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) {
      return;
    }
    const text = source.textContent.trim();
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        copied = true;
      } catch (error) {
        copied = false;
      }
    }
    if (!copied) {
      copied = copyBySelection(source);
    }
    say(button, copied ? "Copied" : "Selected: press Ctrl+C or ⌘C");
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.dataset.label = button.textContent;
    button.setAttribute("aria-live", "polite");
    button.addEventListener("click", function () {
      copy(button);
    });
    button.hidden = false;
  }
})();
