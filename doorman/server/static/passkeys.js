// Passkeys (WebAuthn) on doorman's pages: add one, use one as the second step, sign in with
// one alone (a button, and the browser's autofill: conditional mediation), confirm it is you.
// Each part starts from an element's data-* attributes; no inline script (the CSP forbids it).
(() => {
  "use strict";
  if (window.doormanPasskeys) return; // included by more than one partial on a page
  window.doormanPasskeys = true;

  // -- base64url <-> ArrayBuffer ---------------------------------------------------------

  const toBuffer = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = atob(padded);
    const buffer = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) buffer[i] = bytes.charCodeAt(i);
    return buffer.buffer;
  };

  const toText = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  const descriptors = (list) =>
    (list || []).map((item) => ({ ...item, id: toBuffer(item.id) }));

  const creationOptions = (json) => ({
    ...json,
    challenge: toBuffer(json.challenge),
    user: { ...json.user, id: toBuffer(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  });

  const requestOptions = (json) => ({
    ...json,
    challenge: toBuffer(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  });

  const credentialJSON = (credential) => {
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      json.response.userHandle = response.userHandle ? toText(response.userHandle) : null;
    }
    return json;
  };

  // -- the server --------------------------------------------------------------------------

  const post = async (root, path, body) => {
    const response = await fetch(`${root.dataset.prefix}/passkeys/${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "content-type": "application/json",
        accept: "application/json",
        "x-csrftoken": root.dataset.csrftoken,
      },
      body: JSON.stringify(body),
    });
    let answer = {};
    try {
      answer = await response.json();
    } catch (error) {
      answer = {};
    }
    if (response.status === 403 && typeof answer.step_up === "string") {
      window.location.assign(answer.step_up); // confirm who this is first, then come back
      throw new Error("Confirm it is you first…");
    }
    if (!response.ok) {
      throw new Error(answer.error || answer.detail || `The server said ${response.status}.`);
    }
    return answer;
  };

  // -- what the person reads -----------------------------------------------------------------

  // An IP address cannot be a relying-party id: passkeys need the site's name.
  const onAnAddress = /^[0-9.]+$|:/.test(window.location.hostname);
  const supported = () =>
    typeof window.PublicKeyCredential === "function" && !!navigator.credentials && !onAnAddress;

  const sentence = (error) => {
    switch (error && error.name) {
      case "NotAllowedError":
        return "The passkey request was cancelled or timed out. Try again when you are ready.";
      case "InvalidStateError":
        return "This device already holds a passkey for this account.";
      case "NotSupportedError":
        return "This device cannot make a passkey this site accepts.";
      case "SecurityError":
        return "This address cannot use passkeys (the site's address does not match).";
      default:
        return (error && error.message) || "Something went wrong with the passkey.";
    }
  };

  const say = (root, text, isError) => {
    const status = root.querySelector(".passkey-status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  };

  const unsupported = (root) => {
    say(root, onAnAddress ? "Passkeys need the site's name, not its IP address." : "This browser does not support passkeys.", true);
    root.querySelectorAll("button").forEach((button) => (button.disabled = true));
  };

  const go = (answer) => {
    if (answer.redirect) window.location.assign(answer.redirect);
    else window.location.reload();
  };

  // -- the ceremonies --------------------------------------------------------------------------

  const prove = async (root, purpose, extra, mediation, signal) => {
    const options = await post(root, "authenticate/options", { purpose });
    const request = { publicKey: requestOptions(options) };
    if (mediation) request.mediation = mediation;
    if (signal) request.signal = signal;
    const credential = await navigator.credentials.get(request);
    if (!credential) throw new Error("No passkey was chosen.");
    return post(root, "authenticate", { purpose, credential: credentialJSON(credential), ...extra });
  };

  const startRegister = (form) => {
    if (!supported()) return unsupported(form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      say(form, "Follow your browser's prompt to create the passkey…");
      try {
        const options = await post(form, "register/options", {});
        const credential = await navigator.credentials.create({
          publicKey: creationOptions(options),
        });
        const name = form.querySelector("[name=name]").value;
        const answer = await post(form, "register", {
          credential: credentialJSON(credential),
          name,
        });
        say(form, `Passkey "${answer.passkey.name}" added.`);
        go(answer);
      } catch (error) {
        say(form, sentence(error), true);
        button.disabled = false;
      }
    });
  };

  const startButton = (root, purpose, extra) => {
    if (!supported()) return unsupported(root);
    const button = root.querySelector("[data-passkey-start]");
    button.addEventListener("click", async () => {
      button.disabled = true;
      say(root, "Follow your browser's prompt to use your passkey…");
      try {
        go(await prove(root, purpose, extra()));
      } catch (error) {
        say(root, sentence(error), true);
        button.disabled = false;
      }
    });
  };

  // The login page: a button, and the browser offering passkeys in the username field.
  const startSignIn = (root) => {
    if (!supported()) return; // the password form stays; nothing to offer
    root.hidden = false;
    const form = document.querySelector("form[action$='/login']");
    const destination = () => {
      const values = {};
      for (const name of ["next", "next_sig"]) {
        const input = form && form.querySelector(`[name=${name}]`);
        if (input) values[name] = input.value;
      }
      return values;
    };
    let waiting = null;
    const button = root.querySelector("[data-passkey-start]");
    button.addEventListener("click", async () => {
      if (waiting) waiting.abort(); // one request at a time; the button's replaces autofill's
      waiting = null;
      button.disabled = true;
      say(root, "Follow your browser's prompt to use your passkey…");
      try {
        go(await prove(root, "sign-in", destination()));
      } catch (error) {
        say(root, sentence(error), true);
        button.disabled = false;
      }
    });
    const conditional = PublicKeyCredential.isConditionalMediationAvailable;
    if (typeof conditional !== "function") return;
    conditional.call(PublicKeyCredential).then(async (available) => {
      if (!available) return;
      waiting = new AbortController();
      try {
        go(await prove(root, "sign-in", destination(), "conditional", waiting.signal));
      } catch (error) {
        // Nobody asked: say nothing (the button took over, or autofill is not to be).
        if (error && error.name !== "AbortError") console.info("passkey autofill:", error);
      }
    });
  };

  const start = () => {
    document.querySelectorAll("[data-passkey-register]").forEach(startRegister);
    document
      .querySelectorAll("[data-passkey-second-step]")
      .forEach((root) => startButton(root, "second-step", () => ({})));
    document
      .querySelectorAll("[data-passkey-confirm]")
      .forEach((root) => startButton(root, "confirm", () => ({ next: root.dataset.next || "" })));
    document.querySelectorAll("[data-passkey-sign-in]").forEach(startSignIn);
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
