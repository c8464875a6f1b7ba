/**
 * Masks the credentials of every URL in `text` that carries userinfo (`scheme://USER:PASS@host`):
 * everything between `//` and the LAST `@` before the next white space becomes `***`. A password
 * may itself hold `@`, `:` or `/` (`postgres://we@ird:p@ss:w/rd@host/db`), so stopping at the
 * first `@` would leave part of it in the text. Used on every line that goes to stderr or a log
 * (process-entry.ts, log.ts), so a URL that slipped into a message still hides its password.
 */
export function redactUrl(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)\S*@/gi, "$1***@");
}
