/**
 * The console's HTTP hardening in one place: the headers every console answer carries, the
 * session cookie, and the same-origin check for changes.
 *
 * The Content-Security-Policy allows scripts, styles, images, fonts and connections from the hub
 * itself only, and no inline script or style at all (the pages have none: one script file, one
 * stylesheet); no page may be framed (clickjacking), no <base> may move relative URLs, forms
 * post only to the hub.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** The headers on every console answer, pages, assets and errors alike. */
export function securityHeaders(): Record<string, string> {
  return {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    // The console's URLs hold thing ids: no other site learns them from a link. (Not
    // no-referrer: with it Chromium sends `Origin: null` on the console's own form posts.)
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
  };
}

/**
 * True when the browser reached the hub over HTTPS: the request itself is HTTPS, or the hub's
 * public URL is (a reverse proxy terminates TLS in front of a hub that answers plain HTTP).
 */
export function isSecureRequest(request: Request, publicUrl: string): boolean {
  return new URL(request.url).protocol === "https:" || publicUrl.startsWith("https:");
}

/**
 * The session cookie's name: with HTTPS the `__Host-` prefix, which browsers accept only with
 * Secure, Path=/ and no Domain, so no other host (a sibling subdomain) can set or shadow it.
 */
export function sessionCookieName(secure: boolean): string {
  return secure ? "__Host-flashlex_session" : "flashlex_session";
}

/**
 * The Set-Cookie value for a session id: HttpOnly (no script reads it), SameSite=Strict (no
 * other site's page sends it), Secure over HTTPS, for the whole console, until the browser
 * closes (the hub ends sessions itself: sessions.ts). An empty id with `expire` clears it.
 */
export function sessionCookie(id: string, secure: boolean, expire = false): string {
  const parts = [`${sessionCookieName(secure)}=${id}`, "Path=/", "HttpOnly", "SameSite=Strict"];
  if (secure) parts.push("Secure");
  if (expire) parts.push("Max-Age=0");
  return parts.join("; ");
}

/** The value of cookie `name` in the request's Cookie header, or undefined. */
export function readCookie(request: Request, name: string): string | undefined {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * False when the browser says a request came from another site. A browser that sends
 * `Sec-Fetch-Site` (every current one; no page can set it) is believed: same-origin or none
 * (typed, bookmarked) pass. Without it, an `Origin` that is neither the request's own nor the
 * hub's public URL's (an opaque `null` origin included) fails. A request that says neither
 * passes this check; the CSRF token is the check every change must pass anyway (this one also
 * covers sign-in, which has no session yet: a login CSRF).
 */
export function fromSameOrigin(request: Request, publicUrl: string): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin" || site === "none";
  const origin = request.headers.get("origin");
  if (origin === null) return true;
  const allowed = new Set([new URL(request.url).origin]);
  try {
    allowed.add(new URL(publicUrl).origin);
  } catch {
    // hub.yml's publicUrl is validated as a URL; nothing to add if it were not
  }
  return allowed.has(origin);
}
