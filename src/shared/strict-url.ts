/**
 * `text` parsed as a URL (the WHATWG URL Standard, as `new URL`), or undefined when it is none or
 * holds whitespace or a control character anywhere: the parser drops tabs and line breaks inside
 * a URL and trims the rest without a word, so `http://hub<CR>.lan:8080` was taken for
 * http://hub.lan:8080, not for the typo it is. For URLs given on the command line or in a config.
 */
export function parseUrlStrictly(text: string): URL | undefined {
  if (/[\s\p{Cc}]/u.test(text)) return undefined;
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}
