/**
 * Masks the credentials of every URL in `text` that carries userinfo (`scheme://USER:PASS@host`):
 * everything between `//` and the LAST `@` before the next white space becomes `***` when it holds
 * a `:` (a password; a user name alone is kept). A password
 * may itself hold `@`, `:` or `/` (`postgres://we@ird:p@ss:w/rd@host/db`), so stopping at the
 * first `@` would leave part of it in the text. Used on every line that goes to stderr or a log
 * (process-entry.ts, log.ts), so a URL that slipped into a message still hides its password.
 */
export function redactUrl(text: string): string {
  // most lines hold no URL: a plain search is far cheaper than the regular expression (a log line per message)
  if (!text.includes("://")) return text;
  // userinfo without a colon holds no password (`postgres://flashlex@host/db`, the display form): kept
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)(\S*)@/gi, (whole, scheme: string, userinfo: string) => (userinfo.includes(":") ? `${scheme}***@` : whole));
}
