import { type Html, html } from "../html.ts";
import { page } from "../layout.ts";

/** Access Token: rotate it; the new one is shown once, on the answer to the rotation only. */
export function tokenPage(d: { assets: { js: string; css: string }; csrf: string; newToken?: string; signedOut?: boolean }): Html {
  const staying = d.signedOut
    ? "The hub could not keep this browser signed in (its storage is full?): sign in again with it. Every script using the old token must use the new one."
    : "This browser stays signed in with it; every other sign-in, and every script using the old token, must use the new one.";
  const shown = d.newToken
    ? html`<div class="card ok" role="status">
  <h2>Your new access token</h2>
  <p>It is shown this once: copy it now. ${staying}</p>
  <div class="copyable">
    <pre id="new-token"><code>${d.newToken}</code></pre>
    <button type="button" data-copy="new-token">Copy token</button>
  </div>
</div>`
    : html``;
  return page({
    title: "Access Token",
    section: "token",
    csrf: d.csrf,
    assets: d.assets,
    body: html`<h1>Access Token</h1>
${shown}
<section aria-labelledby="rotate-heading" class="card">
  <h2 id="rotate-heading">Rotate</h2>
  <p>The operator access token signs in here and authorises the HTTP API (<code>Authorization: Bearer …</code>). The hub keeps only its hash, so it cannot show the current one again.</p>
  <p>Rotating makes a new token and stops the old one at once: other browsers are signed out, scripts must be given the new one, and the one-time cURL lines not yet used stop working.</p>
  <form method="post" action="/token" data-confirm="Rotate the access token? The old one stops working at once.">
    <input type="hidden" name="csrf" value="${d.csrf}">
    <button type="submit" class="warn">Rotate the access token</button>
  </form>
</section>`,
  });
}
