/**
 * Fix-it hints quote paths so that a shell reads them back (src/shared/shell-word.ts): checked by
 * running bash on what shellWord gives.
 */
import { expect, test } from "bun:test";
import { shellWord } from "../../src/shared/shell-word.ts";

test("bash reads back every quoted path as it was, one printable line each: spaces, quotes, newlines, ESC, bidi overrides, astral characters beside tag characters", () => {
  const words = ["/a/b", "/my things", "it's", "/tmp/x\ny", "/tmp/\u001b[31mr", "a\\b\r", "\u202eevil", "/flag\u{1F3F4}\u{E0067}\u{E0062}\u{E007F}", "é 😀"];
  for (const word of words) {
    const quoted = shellWord(word);
    expect(
      ["\n", "\r", "\u001b", "\u202e"].some((ch) => quoted.includes(ch)),
      JSON.stringify(word),
    ).toBe(false);
    const back = Bun.spawnSync(["bash", "-c", `printf %s ${quoted}`], { env: { ...process.env, LC_ALL: "C.UTF-8" } }).stdout.toString();
    expect(back, JSON.stringify(word)).toBe(word);
  }
});
