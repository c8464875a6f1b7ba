import { hasUnsafeCharacters } from "./log.ts";

/**
 * A path (or any word) as a POSIX shell reads it back as one word: as it is when it holds only
 * characters no shell treats specially, else in single quotes (a quote inside as '\''); one
 * holding a control or format character (a newline, ESC, a bidi override) as bash's `$'...'`
 * with each such character escaped, so the hint stays one printable line that still runs. For
 * the fix-it commands messages print for a user to copy (`sudo chown pi: '/home/pi/my things'`).
 */
export function shellWord(word: string): string {
  if (/^[\w@%+=:,./-]+$/.test(word)) return word;
  if (!hasUnsafeCharacters(word)) return `'${word.replaceAll("'", `'\\''`)}'`;
  let quoted = "";
  for (const ch of word) {
    if (ch === "\\" || ch === "'") quoted += `\\${ch}`;
    else if (!hasUnsafeCharacters(ch)) quoted += ch;
    else {
      // one escape per code point: bash cannot join two \u halves of a surrogate pair
      const code = ch.codePointAt(0)!;
      quoted += code > 0xffff ? `\\U${code.toString(16).padStart(8, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
    }
  }
  return `$'${quoted}'`;
}
