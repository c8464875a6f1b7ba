/**
 * src/shared/log.ts: one event is one printable line, whatever the values and keys hold (control
 * bytes from a request path, a header, an MQTT client id or topic), and a quoted value reads back
 * exactly with JSON.parse.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { createLogger, cutGiven, escapeUnsafe, formatFields, logLevelFromEnv, quoteGiven, quoteLogText } from "../../src/shared/log.ts";
import { tally } from "../support/tally.ts";

/** What must never appear raw in a line: C0, DEL, C1, format characters, U+2028/9, lone surrogates. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

function lineOf(event: string, fields: Record<string, unknown>): string {
  const lines: string[] = [];
  createLogger({ write: (line) => lines.push(line), journald: true, level: "debug" }).warn(event, fields);
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

/** The value written for `key` in `line` (the last field), unquoted. */
function readBack(line: string, keyText: string): string {
  const at = line.lastIndexOf(` ${keyText}=`);
  expect(at).toBeGreaterThan(0);
  const raw = line.slice(at + keyText.length + 2);
  return raw.startsWith('"') ? JSON.parse(raw) : raw;
}

describe("log lines", () => {
  test("any string value: no control or invisible character and no line break; it reads back exactly", () => {
    let tried = 0;
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 80 }), (value) => {
        tried++;
        const line = lineOf("hub.test", { thing_id: value });
        expect(line).not.toMatch(UNSAFE);
        expect(line).not.toContain("\n");
        expect(readBack(line, "thing_id")).toBe(value);
      }),
      { numRuns: 2000 },
    );
    tally("badInputs", tried);
  });

  test("any key and event name: still one printable line, and a quoted key reads back", () => {
    let tried = 0;
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 30 }),
        fc.string({ unit: "binary", maxLength: 30 }),
        fc.string({ unit: "binary", maxLength: 30 }),
        (event, key, value) => {
          tried++;
          const line = lineOf(event, { [key]: value });
          expect(line).not.toMatch(UNSAFE);
          expect(line).not.toContain("\n");
          const keyText = /^[A-Za-z0-9_.-]+$/.test(key) ? key : quoteLogText(key);
          if (!/(token|secret|password|authorization|private|jwt|bearer)/i.test(key)) expect(readBack(line, keyText)).toBe(value);
        },
      ),
      { numRuns: 1000 },
    );
    tally("badInputs", tried);
  });

  test("ESC, NUL and BEL in a thing id become \\u escapes; plain ids stay bare", () => {
    const line = lineOf("hub.collect_refused", { thing_id: "\u001b[31m\u0000\u0007x", thing: "ecd13b11-a", via: "http" });
    expect(line).toBe('<4>hub.collect_refused thing_id="\\u001b[31m\\u0000\\u0007x" thing=ecd13b11-a via=http');
  });

  test("DEL, C1 controls, U+2028/U+2029, a bidi override and a lone surrogate are escaped too", () => {
    const value = "a\u007fb\u0085c\u009bd\u2028e\u2029f\u202eg\ud800h\udfff";
    const text = formatFields({ v: value });
    expect(text).toBe('v="a\\u007fb\\u0085c\\u009bd\\u2028e\\u2029f\\u202eg\\ud800h\\udfff"');
    expect(JSON.parse(text.slice(2))).toBe(value);
    // A valid astral character is kept; an astral format character is escaped as its two halves.
    expect(formatFields({ v: "🙂\u{E0001}" })).toBe('v="🙂\\udb40\\udc01"');
  });

  test("errors, objects, bigints and cycles format without throwing; secrets stay redacted", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const text = formatFields({ error: new Error("bad\nthing"), obj: { a: "\u2028" }, big: 10n, cycle, token: "abc.def.ghi" });
    expect(text).toBe('error="bad\\nthing" obj="{\\"a\\":\\"\\u2028\\"}" big=10 cycle="[object Object]" token=[redacted]');
    expect(text).not.toMatch(UNSAFE);
  });
});

describe("FLASHLEX_LOG_LEVEL", () => {
  test("debug, info, warn or error; unset or empty is info; anything else is a config error naming it (it was info without a word)", () => {
    expect(logLevelFromEnv({})).toBe("info");
    expect(logLevelFromEnv({ FLASHLEX_LOG_LEVEL: "" })).toBe("info");
    for (const level of ["debug", "info", "warn", "error"] as const) expect(logLevelFromEnv({ FLASHLEX_LOG_LEVEL: level })).toBe(level);
    for (const bad of ["bogus", "DEBUG", "warning", " info", "trace"]) {
      expect(() => logLevelFromEnv({ FLASHLEX_LOG_LEVEL: bad })).toThrow(
        expect.objectContaining({ kind: "config", message: `$FLASHLEX_LOG_LEVEL is ${JSON.stringify(bad)}; it takes debug, info, warn, error (unset: info)` }),
      );
    }
    // a value that would break the line is escaped in it
    expect(() => logLevelFromEnv({ FLASHLEX_LOG_LEVEL: "x\ny" })).toThrow('$FLASHLEX_LOG_LEVEL is "x\\ny"; it takes');
  });

  test("a logger given its level never reads the variable (the SDK's silent logger, a child of a checked one)", () => {
    const previous = process.env.FLASHLEX_LOG_LEVEL;
    process.env.FLASHLEX_LOG_LEVEL = "bogus";
    try {
      const lines: string[] = [];
      const log = createLogger({ level: "debug", write: (l) => lines.push(l), journald: true });
      log.child({ a: 1 }).debug("ev");
      expect(lines).toEqual(["<7>ev a=1"]);
      expect(() => createLogger()).toThrow("$FLASHLEX_LOG_LEVEL");
    } finally {
      if (previous === undefined) delete process.env.FLASHLEX_LOG_LEVEL;
      else process.env.FLASHLEX_LOG_LEVEL = previous;
    }
  });
});

describe("quoteGiven and cutGiven", () => {
  test("a value is cut at 48 characters with …, never between the halves of an emoji (attack round 26, F7)", () => {
    expect(cutGiven("a".repeat(48))).toBe("a".repeat(48));
    expect(cutGiven("a".repeat(49))).toBe(`${"a".repeat(48)}…`);
    expect(cutGiven(`${"a".repeat(47)}😀b`)).toBe(`${"a".repeat(47)}…`);
    expect(cutGiven(`${"a".repeat(46)}😀b`)).toBe(`${"a".repeat(46)}😀…`);
    expect(quoteGiven(`${"a".repeat(47)}😀b`)).toBe(`"${"a".repeat(47)}…"`);
  });
});

describe("escapeUnsafe", () => {
  test("escapes what would break or forge a line (newline, CR, ESC, bidi overrides, U+2028), and leaves quotes, backslashes and other text as they are", () => {
    expect(escapeUnsafe('/tmp/x\ny: "a\\b" \u001b[2J\r\u202e\u2028 é 😀')).toBe('/tmp/x\\u000ay: "a\\b" \\u001b[2J\\u000d\\u202e\\u2028 é 😀');
    expect(escapeUnsafe("plain")).toBe("plain");
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (text) => {
        const escaped = escapeUnsafe(text);
        expect(escaped).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u);
      }),
    );
  });
});
