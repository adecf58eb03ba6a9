// A new API token is shown by the answer to the form's POST itself: the server keeps
// nothing to show it again. This gives that history entry the account page's own URL,
// so that a reload (or coming back to it) asks for that page, without the token, rather
// than offering to send the form again and make a second token.
// A static file, so the Content-Security-Policy keeps script-src 'self' and no inline script.
"use strict";

(function () {
  const shown = document.querySelector("[data-replace-url]");
  if (shown && window.history && typeof window.history.replaceState === "function") {
    window.history.replaceState(null, "", shown.dataset.replaceUrl);
  }
})();
