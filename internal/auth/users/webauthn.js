// WebAuthn ceremonies for ehrvault's login pages: ask the server for
// options, let the browser talk to the authenticator, send back the answer.
// No library: base64url <-> ArrayBuffer is all the glue needed.
"use strict";
(function () {
  function b64uToBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64u(buf) {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function showError(msg) {
    let p = document.getElementById("error");
    if (!p) {
      p = document.createElement("p");
      p.id = "error";
      p.setAttribute("role", "alert");
      document.querySelector("main").insertBefore(p, document.querySelector("main").children[1] || null);
    }
    p.textContent = msg;
  }
  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
      body: body === undefined ? "{}" : JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error_description || "request failed");
    return j;
  }
  async function register() {
    const opts = await post("/auth/webauthn/register/begin");
    const pk = opts.publicKey;
    pk.challenge = b64uToBuf(pk.challenge);
    pk.user.id = b64uToBuf(pk.user.id);
    (pk.excludeCredentials || []).forEach((c) => (c.id = b64uToBuf(c.id)));
    const cred = await navigator.credentials.create({ publicKey: pk });
    const res = await post("/auth/webauthn/register/finish", {
      id: cred.id,
      rawId: bufToB64u(cred.rawId),
      type: cred.type,
      response: {
        clientDataJSON: bufToB64u(cred.response.clientDataJSON),
        attestationObject: bufToB64u(cred.response.attestationObject),
        transports: cred.response.getTransports ? cred.response.getTransports() : [],
      },
      clientExtensionResults: cred.getClientExtensionResults(),
    });
    location.assign(res.next);
  }
  async function login() {
    const opts = await post("/auth/webauthn/login/begin");
    const pk = opts.publicKey;
    pk.challenge = b64uToBuf(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => (c.id = b64uToBuf(c.id)));
    const cred = await navigator.credentials.get({ publicKey: pk });
    const next = document.body.dataset.next || "";
    const res = await post("/auth/webauthn/login/finish?next=" + encodeURIComponent(next), {
      id: cred.id,
      rawId: bufToB64u(cred.rawId),
      type: cred.type,
      response: {
        clientDataJSON: bufToB64u(cred.response.clientDataJSON),
        authenticatorData: bufToB64u(cred.response.authenticatorData),
        signature: bufToB64u(cred.response.signature),
        userHandle: cred.response.userHandle ? bufToB64u(cred.response.userHandle) : null,
      },
      clientExtensionResults: cred.getClientExtensionResults(),
    });
    location.assign(res.next);
  }
  function wire(id, f) {
    const b = document.getElementById(id);
    if (!b) return;
    b.addEventListener("click", () => {
      b.disabled = true;
      f().catch((e) => {
        b.disabled = false;
        showError("Security key: " + e.message);
      });
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    wire("webauthn-register", register);
    wire("webauthn-login", login);
  });
})();
