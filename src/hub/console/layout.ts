/**
 * The page shell every console page shares: one stylesheet and one script from the hub (no CDN,
 * no inline code: the CSP allows neither), a skip link, the top navigation of the guide's console
 * ("Things", "Messages", "Access Token") and sign out, and the page's own content in <main>.
 */
import { type Html, html } from "./html.ts";

export type Section = "things" | "messages" | "token";

export interface PageShell {
  /** the page's title, shown in the tab before "FlashLex hub" */
  title: string;
  /** the signed-in session's CSRF token; absent on the sign-in page (no navigation then) */
  csrf?: string;
  /** the top-level section this page belongs to, marked in the navigation */
  section?: Section;
  /** the asset URLs (content-hashed: assets.ts) */
  assets: { js: string; css: string };
  body: Html;
}

const SECTIONS: { id: Section; href: string; label: string }[] = [
  { id: "things", href: "/things", label: "Things" },
  { id: "messages", href: "/messages", label: "Messages" },
  { id: "token", href: "/token", label: "Access Token" },
];

/** The whole HTML document around `shell.body`; the navigation and the CSRF meta only when `csrf` is given. */
export function page(shell: PageShell): Html {
  const nav =
    shell.csrf === undefined
      ? html``
      : html`<nav aria-label="Console">
      <ul>
        ${SECTIONS.map((s) => html`<li><a href="${s.href}"${s.id === shell.section ? html` aria-current="page"` : html``}>${s.label}</a></li>`)}
      </ul>
      <form method="post" action="/signout" class="signout">
        <input type="hidden" name="csrf" value="${shell.csrf}">
        <button type="submit" class="link">Sign out</button>
      </form>
    </nav>`;
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  ${shell.csrf === undefined ? html`` : html`<meta name="csrf-token" content="${shell.csrf}">`}
  <title>${shell.title} · FlashLex hub</title>
  <link rel="stylesheet" href="${shell.assets.css}">
  <script type="module" src="${shell.assets.js}"></script>
</head>
<body>
  <a class="skip" href="#main">Skip to content</a>
  <header class="top">
    <a class="brand" href="/things">FlashLex hub</a>
    ${nav}
  </header>
  <main id="main" tabindex="-1">
${shell.body}
  </main>
</body>
</html>
`;
}

/** A notice after an action (role=status: screen readers announce it). `tone` sets its colour. */
export function notice(text: Html | string, tone: "ok" | "error" = "ok"): Html {
  return tone === "error" ? html`<p class="notice error" role="alert">${text}</p>` : html`<p class="notice ok" role="status">${text}</p>`;
}
