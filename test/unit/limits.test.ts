/**
 * src/protocol/limits.ts: the JSON depth and size limits every document from outside goes
 * through. The depth scanner is checked against a recursive reference on generated JSON, and the
 * parser never throws anything but JsonDocumentError, whatever the text.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import {
  DEFAULT_PAYLOAD_LIMIT_BYTES,
  JsonDocumentError,
  jsonNestingDepth,
  MAX_JSON_DEPTH,
  parseJsonDocument,
  stringifyJsonValue,
} from "../../src/protocol/limits.ts";
import { InputError } from "../../src/shared/errors.ts";
import { tally } from "../support/tally.ts";

/** The depth by recursion over the parsed value (fine for the shallow values fast-check makes). */
function referenceDepth(value: unknown): number {
  if (value === null || typeof value !== "object") return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce((max: number, child) => Math.max(max, referenceDepth(child)), 0);
}

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

function problemOf(text: string, limits?: Parameters<typeof parseJsonDocument>[1]): string | undefined {
  try {
    parseJsonDocument(text, limits);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(JsonDocumentError);
    return (err as JsonDocumentError).problem;
  }
}

/** What parseJsonDocument throws for `text`, checked to be a JsonDocumentError; the test fails when the text parses. */
function refusalOf(text: string, limits?: Parameters<typeof parseJsonDocument>[1]): JsonDocumentError {
  try {
    parseJsonDocument(text, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(JsonDocumentError);
    return err as JsonDocumentError;
  }
  throw new Error(`parsed, not refused: ${text.slice(0, 80)}`);
}

describe("jsonNestingDepth", () => {
  test("equals the depth of the parsed value for any JSON text, strings with brackets and escapes included", () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 8, stringUnit: "binary" }), (text) => {
        expect(jsonNestingDepth(text)).toBe(referenceDepth(JSON.parse(text)));
      }),
      { numRuns: 500 },
    );
    expect(jsonNestingDepth('["[[[", {"k\\"[": "\\\\"}, "]]]"]')).toBe(2);
    expect(jsonNestingDepth('"[[["')).toBe(0);
  });

  test("stops just past the limit, so a huge depth costs nothing", () => {
    const text = nested(1_000_000);
    expect(jsonNestingDepth(text, 64)).toBe(65);
    expect(jsonNestingDepth(text)).toBe(1_000_000);
  });
});

describe("parseJsonDocument", () => {
  test("64 levels are accepted, 65 refused as too deep, 100,000 refused before any recursion", () => {
    expect(parseJsonDocument(nested(MAX_JSON_DEPTH))).toBeArray();
    expect(parseJsonDocument(`{"a":${nested(MAX_JSON_DEPTH - 1)}}`)).toBeObject();
    for (const depth of [MAX_JSON_DEPTH + 1, 30_000, 100_000]) expect(problemOf(nested(depth))).toBe("too_deep");
    expect(problemOf(`{"a":${nested(MAX_JSON_DEPTH)}}`)).toBe("too_deep");
    // Unbalanced: the scan bounds what the parser would reach before its error.
    expect(problemOf("[".repeat(100_000))).toBe("too_deep");
    expect(problemOf("[".repeat(10))).toBe("not_json");
    tally("badInputs", 6);
  });

  test("size is counted in UTF-8 bytes, 256 KiB by default; empty and non-JSON are their own problems", () => {
    const fits = JSON.stringify("é".repeat((DEFAULT_PAYLOAD_LIMIT_BYTES - 2) / 2));
    expect(Buffer.byteLength(fits)).toBe(DEFAULT_PAYLOAD_LIMIT_BYTES);
    expect(parseJsonDocument(fits)).toBeString();
    expect(problemOf(JSON.stringify("é".repeat(DEFAULT_PAYLOAD_LIMIT_BYTES / 2)))).toBe("too_large");
    expect(problemOf('"abcdef"', { maxBytes: 7 })).toBe("too_large");
    expect(problemOf("  \n")).toBe("empty");
    expect(problemOf("{'a': 1}")).toBe("not_json");
    tally("badInputs", 4);
  });

  test("errors are InputErrors (exit 65), one line, naming the source and not quoting a long document", () => {
    try {
      parseJsonDocument(`{${'"k": 1, '.repeat(1000)}\u0007\n`, { source: "stdin" });
      throw new Error("not refused");
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      expect(exitCodeOf(err)).toBe(ExitCode.DATA);
      expect((err as Error).message).toStartWith("stdin: not JSON");
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must not reach the message
      expect((err as Error).message).not.toMatch(/[\u0000-\u001f]/);
      expect((err as Error).message.length).toBeLessThan(200);
    }
  });

  test("the error says where the text stops being JSON: line and column, and names text after the document", () => {
    const refusal = (text: string) => {
      try {
        parseJsonDocument(text, { source: "stdin" });
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error("not refused");
    };
    expect(refusal('{"a": 1}\n{"b": 2}\n')).toBe("stdin: not JSON at line 2, column 1 (text after the document: one JSON document only)");
    expect(refusal('{"a": 1}}')).toBe("stdin: not JSON at line 1, column 9 (text after the document: one JSON document only)");
    expect(refusal('{\n  "a": 1\n  "b": 2\n}')).toStartWith("stdin: not JSON at line 3, column 3 (");
    expect(refusal('{"a": [1, 2,]}')).toStartWith("stdin: not JSON at line 1, column 13 (");
    expect(refusal("// a comment\n{}")).toStartWith("stdin: not JSON at line 1, column 1 (");
    // columns count characters as an editor shows them: an emoji is one
    expect(refusal('{"\u{1F600}\u{1F600}\u{1F600}": "\u{1F600}" x}')).toStartWith("stdin: not JSON at line 1, column 13 (");
    // a control character is named where it is, not at the string that holds it
    expect(refusal('{"a": "x\ty"}')).toBe("stdin: not JSON at line 1, column 9 (a control character, U+0009, inside a string: escape it, as \\n or \\u0009)");
    expect(refusal('{"a": 1}\u0000')).toBe("stdin: not JSON at line 1, column 9 (a control character, U+0000, outside any string)");
    // any text after a complete document is named so, not only another document
    expect(refusal('{"a": 1}\n\n  x')).toBe("stdin: not JSON at line 3, column 3 (text after the document: one JSON document only)");
    // lines end at CR LF, LF or a lone CR, as in an editor (a document from a serial console or a classic Mac): it said "line 1, column 15"
    expect(refusal('{\r  "a": 1\r  "b": 2\r}')).toStartWith("stdin: not JSON at line 3, column 3 (");
    expect(refusal('{\r\n  "a": 1\r\n  "b": 2\r\n}')).toStartWith("stdin: not JSON at line 3, column 3 (");
    expect(refusal('{"a": 1}\r\r  x')).toBe("stdin: not JSON at line 3, column 3 (text after the document: one JSON document only)");
    // a character the parser quotes is named by its code point, never printed raw (here a right-to-left override)
    expect(refusal('{"a": \u202e 1}')).toBe("stdin: not JSON at line 1, column 7 (Unrecognized token 'U+202E')");
  });

  test("an integer past 2^53 written in digits is refused where it is, not sent as the nearest double; one a double holds exactly, or written with a fraction or exponent, is kept", () => {
    for (const [text, token, as] of [
      ["9007199254740993", "9007199254740993", "9007199254740992"],
      ['{"a": [1, {"b": -123456789012345678901}]}', "-123456789012345678901", "-123456789012345680000"],
      [`{"a": 1${"0".repeat(250)}}`, `1${"0".repeat(36)}...`, "1e+250"],
    ] as const) {
      const error = refusalOf(text, { source: "stdin" });
      expect(error.problem).toBe("out_of_range");
      expect(error.message).toMatch(
        new RegExp(
          `^stdin: the integer ${token.replace(/[.+]/g, "\\$&")} at line 1, column \\d+ is beyond what a JSON number here holds exactly \\(±2\\^53\\): it would be sent as ${as.replace(/[.+]/g, "\\$&")}; send it as a string$`,
        ),
      );
    }
    expect(
      parseJsonDocument(
        '{"a": 9007199254740992, "b": 9007199254740991, "c": 18014398509481984, "d": 9007199254740993.0, "e": 9.007199254740993e15, "f": "9007199254740993"}',
      ),
    ).toEqual({
      a: 2 ** 53,
      b: Number.MAX_SAFE_INTEGER,
      c: 2 ** 54,
      d: 2 ** 53,
      e: 2 ** 53,
      f: "9007199254740993",
    });
    // written back as the same text (what JSON.stringify wrote): kept
    expect(parseJsonDocument('{"b": 36240783057721050, "c": 9007199254740992000}')).toEqual({ b: 36240783057721050, c: 9007199254740992000 });
    // held exactly by the double, but written back as other digits (2^64, 10^21): refused
    for (const [token, as] of [
      ["18446744073709551616", "18446744073709552000"],
      ["1000000000000000000000", "1e+21"],
    ]) {
      expect(refusalOf(`{"a": ${token}}`, { source: "stdin" }).message).toContain(
        `the integer ${token} at line 1, column 7 is beyond what a JSON number here holds exactly (±2^53): it would be sent as ${as};`,
      );
    }
  });

  test("a number past the doubles' range is refused where it is, not stored as null; one in a string, or a small one, is kept", () => {
    // 1e310 written as 251 digits and a two-digit exponent passed the first look at the text
    for (const text of ['{"a": 1e999}', '{"a": [-2E+400]}', `{"a": 1${"0".repeat(400)}}`, `{"a": 1${"0".repeat(250)}e60}`]) {
      const error = refusalOf(text, { source: "stdin" });
      expect(error.problem).toBe("out_of_range");
      expect(error.message).toStartWith("stdin: the number at line 1, column ");
      expect(error.message).toContain("is beyond what a JSON number here can hold (about ±1.8e308): it would be stored as null; send it as a string");
    }
    expect(parseJsonDocument('{"a": "1e999", "b": 1e308, "c": 1e-999, "d": 1.7976931348623157e308}')).toEqual({
      a: "1e999",
      b: 1e308,
      c: 0,
      d: Number.MAX_VALUE,
    });
    expect(parseJsonDocument('{"a": 1e250}')).toEqual({ a: 1e250 });
    // deep inside arrays and objects, after many finite numbers: found, and where
    expect(() => parseJsonDocument(`{"a": [${"1.5, ".repeat(500)}{"b": [[{"c": -1e400}]]}]}`, { source: "stdin" })).toThrow(
      "stdin: the number at line 1, column 2522 is beyond",
    );
    // text that looks like a big exponent but is no number (UUIDs, hex) is kept as it is
    const ids = ["0a1e9999-4c2d-4e5f-8a1b-2c3d4e5f6a7b", "ffe1234e-0000-4000-8000-00000000e999"];
    expect(parseJsonDocument(JSON.stringify({ things: ids, message: 1e308 }))).toEqual({ things: ids, message: 1e308 });
  });

  test("any text at all: the parsed value equals JSON.parse's, or a JsonDocumentError, never another error", () => {
    const text = fc.oneof(
      fc.string({ unit: "binary", maxLength: 200 }),
      fc.json({ maxDepth: 4 }),
      fc.integer({ min: 0, max: 200 }).map((depth) => nested(depth)),
      fc.tuple(fc.json({ maxDepth: 3 }), fc.integer({ min: 0, max: 20 })).map(([json, cut]) => json.slice(0, Math.max(0, json.length - cut))),
    );
    let tried = 0;
    fc.assert(
      fc.property(text, (input) => {
        tried++;
        let expected: unknown;
        let parses = true;
        try {
          expected = JSON.parse(input);
        } catch {
          parses = false;
        }
        try {
          const value = parseJsonDocument(input, { maxDepth: 64 });
          expect(parses).toBe(true);
          expect(value).toEqual(expected);
        } catch (err) {
          expect(err).toBeInstanceOf(JsonDocumentError);
          if (parses) expect(["too_deep", "empty"]).toContain((err as JsonDocumentError).problem);
        }
      }),
      { numRuns: 1000 },
    );
    tally("badInputs", tried);
  });
});

describe("stringifyJsonValue", () => {
  test("writes what JSON.stringify writes for any JSON value, and refuses exactly what parseJsonDocument would refuse as too deep", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 1, max: 8 }), (value, maxDepth) => {
        const text = JSON.stringify(value);
        const tooDeep = jsonNestingDepth(text) > maxDepth;
        let written: string | undefined;
        try {
          written = stringifyJsonValue(value, { maxDepth });
        } catch (err) {
          expect(err).toBeInstanceOf(JsonDocumentError);
          expect((err as JsonDocumentError).problem).toBe("too_deep");
        }
        expect(written === undefined).toBe(tooDeep);
        if (written !== undefined) expect(written).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  test("a 100,000-deep array, a cycle, a BigInt, NaN, no value and a Map or Set (JSON would write {}) are JsonDocumentErrors naming the member, never a RangeError or TypeError", () => {
    let deep: unknown = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const cyclic: Record<string, unknown> = {};
    cyclic.again = { inner: cyclic };
    /** the message of the JsonDocumentError (exit 65) each value is refused with */
    const refusals = (values: unknown[]) => {
      tally("badInputs", values.length);
      return values.map((value) => {
        try {
          return stringifyJsonValue(value, { source: "collectMessage" });
        } catch (err) {
          expect(err).toBeInstanceOf(JsonDocumentError);
          expect(exitCodeOf(err)).toBe(ExitCode.DATA);
          return (err as Error).message;
        }
      });
    };
    const problems = refusals([deep, cyclic, { a: [1, { "b c": 2n }] }, { n: Number.NaN }, undefined, () => 1]);
    expect(problems).toEqual([
      "collectMessage: arrays and objects nested more than 64 levels deep (the limit)",
      "collectMessage: not JSON (it contains itself: a cyclic structure)",
      'collectMessage: $.a[1]["b c"] is a BigInt, which JSON cannot carry',
      "collectMessage: $.n is NaN, which JSON cannot carry",
      "collectMessage: not a JSON value (undefined)",
      "collectMessage: not a JSON value (function)",
    ]);
    // built-ins whose contents JSON.stringify drops without a word ({} or an object of indexes)
    const lossy = refusals([
      { readings: new Map([["t", 21]]) },
      { seen: [1, new Set([1, 2])] },
      { raw: new Uint8Array([1, 2]) },
      { raw: new ArrayBuffer(2) },
      { pattern: /x/ },
      { failure: new Error("boom") },
      { later: Promise.resolve(1) },
      new Map(),
    ]).map((message) => message.replace(/ \(it would.*$/, ""));
    expect(lossy).toEqual([
      "collectMessage: $.readings is of type Map, which JSON cannot carry",
      "collectMessage: $.seen[1] is of type Set, which JSON cannot carry",
      "collectMessage: $.raw is of type Uint8Array, which JSON cannot carry",
      "collectMessage: $.raw is of type ArrayBuffer, which JSON cannot carry",
      "collectMessage: $.pattern is of type RegExp, which JSON cannot carry",
      "collectMessage: $.failure is of type Error, which JSON cannot carry",
      "collectMessage: $.later is of type Promise, which JSON cannot carry",
      "collectMessage: $ is of type Map, which JSON cannot carry",
    ]);
    // members JSON.stringify would drop or write as null
    expect(refusals([{ f: () => 1 }, { s: Symbol("s") }, [1, undefined], { d: new Date(Number.NaN) }, { j: { toJSON: () => undefined } }])).toEqual([
      "collectMessage: $.f is a function, which JSON cannot carry",
      "collectMessage: $.s is a symbol, which JSON cannot carry",
      "collectMessage: $[1] is undefined, which JSON would write as null",
      "collectMessage: $.d is an invalid Date, which JSON would write as null",
      "collectMessage: $.j: its toJSON() gave no value",
    ]);
    // an object member that is undefined is left out, as JSON.stringify leaves it
    expect(stringifyJsonValue({ a: undefined, b: 1 })).toBe('{"b":1}');
    // what has a toJSON is what it makes (a Date its ISO text, a Buffer its {type, data}); a class instance its own fields
    class Reading {
      constructor(readonly t: number) {}
    }
    expect(stringifyJsonValue({ at: new Date(0), b: Buffer.from([1]), r: new Reading(2) })).toBe(
      '{"at":"1970-01-01T00:00:00.000Z","b":{"type":"Buffer","data":[1]},"r":{"t":2}}',
    );
    // an object met twice (not a cycle) is written twice, as JSON.stringify does
    const shared = { x: 1 };
    expect(stringifyJsonValue({ p: shared, q: [shared] })).toBe('{"p":{"x":1},"q":[{"x":1}]}');
  });
});

describe("parseJsonDocument: a name given twice in one object", () => {
  test("is refused at any depth, whatever the values, spacing and escapes, naming it and where; each name once (repeats across objects, names in values) parses", () => {
    const name = fc.string({ maxLength: 8 });
    let tried = 0;
    fc.assert(
      fc.property(
        fc.dictionary(name, fc.jsonValue({ maxDepth: 3 }), { minKeys: 1 }),
        fc.jsonValue({ maxDepth: 3 }),
        fc.integer({ min: 0, max: 4 }),
        fc.boolean(),
        (members, value, depth, spaced) => {
          tried++;
          const text = JSON.stringify(members, null, spaced ? 2 : undefined);
          const wrap = (inner: string) => '{"w":['.repeat(depth) + inner + "]}".repeat(depth);
          // every name once in each object: parsed as JSON.parse reads it (the values may repeat
          // names of their own objects, and the wrapper's "w" recurs at every level)
          expect(parseJsonDocument(wrap(text))).toEqual(JSON.parse(wrap(text)));
          const names = Object.keys(members);
          const again = names[names.length - 1]!;
          // a plain name is written again with one letter escaped: the same name to JSON
          const plain = /^[a-z0-9 _-]*$/.test(again);
          const escaped = plain ? JSON.stringify(again).replace(/[a-z]/, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) : JSON.stringify(again);
          const before = '{"w":['.repeat(depth) + text.slice(0, text.lastIndexOf("}")) + (spaced ? ",\n  " : ",");
          const repeated = `${before}${escaped} : ${JSON.stringify(value)}}${"]}".repeat(depth)}`;
          const error = refusalOf(repeated, { source: "stdin" });
          expect(error.problem).toBe("repeated_name");
          const at = before.length;
          const line = repeated.slice(0, at).split("\n").length;
          const column = Array.from(repeated.slice(repeated.lastIndexOf("\n", at - 1) + 1, at)).length + 1;
          expect(error.message).toBe(
            `stdin: the name ${JSON.stringify(again.slice(0, 40))} at line ${line}, column ${column} is given twice in one object: only its last value would be kept; give each name once`,
          );
        },
      ),
      { numRuns: 300 },
    );
    tally("badInputs", tried);
  });

  test("the name is quoted with its invisible, bidirectional and control characters escaped: the message reaches terminals and clients", () => {
    const name = "\u202eab\u009b31m\u2028";
    const { message } = refusalOf(`{"x":{${JSON.stringify(name)}:1,${JSON.stringify(name)}:2}}`, { source: "stdin" });
    expect(message).toBe(
      'stdin: the name "\\u202eab\\u009b31m\\u2028" at line 1, column 20 is given twice in one object: only its last value would be kept; give each name once',
    );
    expect(/[\u0080-\u009f\u2028\u202e]/.test(message)).toBe(false);
  });
});
