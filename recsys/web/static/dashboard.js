// Sign in and out of the dashboard: the key goes as JSON to /dashboard/session,
// which sets it as an HttpOnly cookie (this script never stores it).
"use strict";

const signin = document.getElementById("signin");
if (signin) {
  signin.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("signin-error");
    const response = await fetch("/dashboard/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ api_key: document.getElementById("api-key").value }),
      credentials: "same-origin",
    });
    if (response.ok) {
      window.location.reload();
      return;
    }
    const body = await response.json().catch(() => null);
    error.textContent = body && body.error ? body.error.message : `sign-in failed (${response.status})`;
    error.hidden = false;
  });
}

const signout = document.getElementById("signout");
if (signout) {
  signout.addEventListener("click", async () => {
    await fetch("/dashboard/session", { method: "DELETE", credentials: "same-origin" });
    window.location.assign("/");
  });
}
