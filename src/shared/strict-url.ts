/**
 * `text` parsed as a URL (the WHATWG URL Standard, as `new URL`), or undefined when it is none or
 * holds whitespace, a control character or an invisible one anywhere: the parser drops tabs and
 * line breaks inside a URL, trims the rest, and its host processing (UTS #46) maps a soft hyphen
 * or a zero-width space to nothing, all without a word, so `http://hub<CR>.lan:8080` or
 * `http://127.0.0.1<U+00AD>:18080` was taken for another URL than the typo it is. For URLs given
 * on the command line or in a config.
 */
export function parseUrlStrictly(text: string): URL | undefined {
  if (/[\s\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/u.test(text)) return undefined;
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}
