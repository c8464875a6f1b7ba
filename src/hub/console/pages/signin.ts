import { type Html, html } from "../html.ts";
import { notice, page } from "../layout.ts";

/** Sign in with the operator access token (`hub init` or `hub token rotate` printed it). */
export function signInPage(opts: { assets: { js: string; css: string }; error?: string; info?: string }): Html {
  return page({
    title: "Sign in",
    assets: opts.assets,
    body: html`<section class="narrow">
  <h1>Sign in</h1>
  ${opts.error ? notice(opts.error, "error") : html``}
  ${opts.info ? notice(opts.info) : html``}
  <form method="post" action="/signin" class="stack">
    <label for="token">Operator access token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" spellcheck="false" required aria-describedby="token-help">
    <p id="token-help" class="help"><code>flashlex hub init</code> printed it; <code>flashlex hub token rotate</code> makes a new one.</p>
    <button type="submit">Sign in</button>
  </form>
</section>`,
  });
}
