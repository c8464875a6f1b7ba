/**
 * How large and how deeply nested a JSON document from outside may be, for the thing and the hub
 * alike, and the one parser that enforces it. Every place a document enters FlashLex (the hub's
 * HTTP bodies, the MQTT collect and test envelopes, `hub send`, the thing's `collect` and its
 * control socket) parses through `parseJsonDocument`, so the limits cannot drift apart.
 *
 * Why depth: `JSON.parse` and `JSON.stringify` recurse once per nesting level. A 100,000-deep
 * array overflows the stack (a 500 before this existed); a 30,000-deep one parsed, was stored,
 * and later cost the hub 30 s and 3.5 GB to pretty-print into an archive (the indentation grows
 * with the depth, so the output grows with its square). Real messages are a few levels deep.
 *
 * Why scan first: the depth is measured by `jsonNestingDepth`, a single loop with no recursion
 * that stops as soon as the limit is passed, before the document reaches a recursive parser.
 *
 * This module imports neither src/thing nor src/hub.
 */
import type * as Jsonc from "jsonc-parser";
import { InputError } from "../shared/errors.ts";
import { quoteLogText } from "../shared/log.ts";

/**
 * The deepest nesting of arrays and objects a message may have. `1`, `"a"`: depth 0;
 * `[]`, `{}`: 1; `{"a": [1]}`: 2. A message of depth 64 is accepted, 65 is refused.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * The largest message, in bytes of UTF-8 JSON: the thing's `collect` refuses more, and it is the
 * hub's default `api.payloadLimitBytes` (hub.yml), which bounds collect and publish bodies.
 */
export const DEFAULT_PAYLOAD_LIMIT_BYTES = 256 * 1024;

/**
 * How much larger than its limit a document may be as written (pretty-printed, escaped): a file,
 * stdin or an operator's publish body is read up to this many times the limit, and the limit is
 * then held to the document compact (`collect`) or the message compact and wrapped (publish).
 */
export const WRITTEN_TEXT_FACTOR = 4;

/** The most bytes of a document `collect` reads as written (pretty-printed JSON may be larger than the compact text it sends). */
export const EGRESS_TEXT_LIMIT_BYTES = WRITTEN_TEXT_FACTOR * DEFAULT_PAYLOAD_LIMIT_BYTES;

/**
 * An envelope (the MQTT collect envelope `{messageId, thingId, token, payload}`, the publish body
 * `{"message": ...}`) puts the message one level deeper: it may be this much deeper than the
 * message limit.
 */
export const ENVELOPE_DEPTH = 1;

/** Room for the MQTT collect envelope around the payload: ids, keys and a JWT (about 1 KB with RS256). */
export const ENVELOPE_OVERHEAD_BYTES = 8 * 1024;

/**
 * The largest MQTT envelope (collect or test message) a hub whose messages may be
 * `payloadLimitBytes` accepts: the message plus ENVELOPE_OVERHEAD_BYTES. The embedded broker
 * refuses bigger PUBLISH packets and the hub drops bigger envelopes.
 */
export function maxEnvelopeBytes(payloadLimitBytes: number): number {
  return payloadLimitBytes + ENVELOPE_OVERHEAD_BYTES;
}

/** What is wrong with a document: each has its own answer (HTTP 400 or 413, exit 65). */
export type JsonProblem = "empty" | "too_large" | "too_deep" | "not_json" | "out_of_range" | "repeated_name";

/** A document refused by `parseJsonDocument`; an InputError, so the CLI exits 65. One line, no document text. */
export class JsonDocumentError extends InputError {
  constructor(
    readonly problem: JsonProblem,
    message: string,
  ) {
    super(message);
    this.name = "JsonDocumentError";
  }
}

/**
 * The deepest nesting of `[`/`{` in `text`, outside strings, in one pass without recursion.
 * Stops and returns as soon as the depth passes `stopAbove` (so the answer is then
 * `stopAbove + 1`, not the full depth). For valid JSON this is exactly the document's depth;
 * for invalid JSON it bounds the depth any parser reaches before it finds the error, since up
 * to that point the text is a valid prefix.
 */
export function jsonNestingDepth(text: string, stopAbove = Number.POSITIVE_INFINITY): number {
  return scanStructure(text, stopAbove).depth;
}

/**
 * `jsonNestingDepth`'s pass, also counting the member names it passes (a string followed by `:`),
 * in every object at every depth: for valid JSON, more names than the parsed objects have keys
 * means an object gives a name twice (see `parseJsonDocument`). `names` is only a partial count
 * when the scan stopped early (`depth` past `stopAbove`).
 */
function scanStructure(text: string, stopAbove: number): { depth: number; names: number } {
  let depth = 0;
  let max = 0;
  let names = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
      let next = i + 1;
      while (isJsonWhitespace(text.charCodeAt(next))) next++;
      if (text.charCodeAt(next) === 0x3a /* : */) names++;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) {
        max = depth;
        if (max > stopAbove) return { depth: max, names };
      }
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) depth--;
  }
  return { depth: max, names };
}

/** Space, tab, line feed, carriage return: JSON's whitespace (RFC 8259 §2). */
const isJsonWhitespace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

export interface JsonDocumentLimits {
  /** largest size in UTF-8 bytes; default DEFAULT_PAYLOAD_LIMIT_BYTES */
  maxBytes?: number;
  /** deepest nesting; default MAX_JSON_DEPTH (add ENVELOPE_DEPTH for an envelope) */
  maxDepth?: number;
  /** names the document in the error message: a file, "stdin", "the body" */
  source?: string;
}

/**
 * Parses one JSON document from outside after checking, in this order, that it is not over
 * `maxBytes` (UTF-8), not blank, and not nested deeper than `maxDepth`; then that it is JSON, that
 * no number is beyond a double's range and that no object gives a name twice: either would be
 * stored changed, so neither is taken.
 * Returns the parsed value. Throws JsonDocumentError (an InputError: exit 65) naming the problem
 * and `source`; nothing else. JSON per RFC 8259 as `JSON.parse` reads it, with each object's
 * names unique (RFC 8259 §4 leaves a repeated one to the parser; I-JSON, RFC 7493 §2.3, refuses it).
 */
export function parseJsonDocument(text: string, limits: JsonDocumentLimits = {}): unknown {
  const maxBytes = limits.maxBytes ?? DEFAULT_PAYLOAD_LIMIT_BYTES;
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  const source = limits.source ?? "the document";
  // Characters are at most 3 UTF-8 bytes each (a surrogate pair is 4 bytes for 2), so short
  // texts skip the count.
  const bytes = text.length * 3 > maxBytes ? Buffer.byteLength(text, "utf8") : text.length;
  if (bytes > maxBytes) throw new JsonDocumentError("too_large", `${source}: ${bytes} bytes is over the ${maxBytes}-byte limit`);
  if (text.trim() === "") throw new JsonDocumentError("empty", `${source}: empty, expected one JSON document`);
  const structure = scanStructure(text, maxDepth);
  if (structure.depth > maxDepth) {
    throw new JsonDocumentError("too_deep", `${source}: arrays and objects nested more than ${maxDepth} levels deep (the limit)`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new JsonDocumentError("not_json", `${source}: not JSON${syntaxErrorAt(text, (err as Error).message)}`);
  }
  // The parsed value says whether there is a fault; only then is the text read again for where.
  const parsed = walkParsed(value);
  // A number past the doubles' range (1e999) parses as Infinity, which JSON.stringify writes as
  // null: the message would be stored changed.
  if (parsed.nonFinite) {
    throw new JsonDocumentError(
      "out_of_range",
      `${source}: the number at ${infiniteNumberAt(text) ?? "some place"} is beyond what a JSON number here can hold (about ±1.8e308): it would be stored as null; send it as a string`,
    );
  }
  // An integer past 2^53 (a 64-bit counter, a serial) parses as the nearest double, written back
  // in the double's shortest form: 9007199254740993 went out as 9007199254740992, 2^64 as
  // 18446744073709552000. A number written with a fraction or an exponent is a double by its own
  // form, and stays one.
  if (parsed.unsafeInteger) {
    const inexact = inexactIntegerAt(text);
    if (inexact) {
      throw new JsonDocumentError(
        "out_of_range",
        `${source}: the integer ${inexact.token.length > 40 ? `${inexact.token.slice(0, 37)}...` : inexact.token} at ${inexact.at} is beyond what a JSON number here holds exactly (±2^53): it would be sent as ${inexact.as}; send it as a string`,
      );
    }
  }
  // JSON.parse keeps the last of two members with one name without a word: `{"a": 1, "a": 2}`
  // would be stored as `{"a":2}`, and a request's field given twice read as its last value.
  if (parsed.keys !== structure.names) {
    const repeated = repeatedNameAt(text);
    // quoted with every invisible, bidirectional or control character escaped: it reaches a terminal or a client
    const what = repeated
      ? `the name ${quoteLogText(repeated.name.slice(0, 40))} at ${repeated.at} is given twice in one object`
      : "an object gives a name twice";
    throw new JsonDocumentError("repeated_name", `${source}: ${what}: only its last value would be kept; give each name once`);
  }
  return value;
}

/**
 * What `value` (what JSON.parse made) holds: whether ±Infinity is anywhere, and how many keys its
 * objects have in all. A walk of the parsed value, not a look at the text: a pattern over the
 * text (an exponent of three digits) also matched hexadecimal text such as UUIDs ("…1e234…"), so
 * a fan-out naming 5,000 things was read a second time, ~10 ms, for nothing. Nesting is bounded
 * by the depth check before JSON.parse.
 */
function walkParsed(value: unknown): { nonFinite: boolean; unsafeInteger: boolean; keys: number } {
  let nonFinite = false;
  let unsafeInteger = false;
  let keys = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const next = pending.pop();
    if (typeof next === "number") {
      if (!Number.isFinite(next)) nonFinite = true;
      else if (!Number.isSafeInteger(next) && Number.isInteger(next)) unsafeInteger = true;
    } else if (Array.isArray(next)) {
      for (const item of next) pending.push(item);
    } else if (next !== null && typeof next === "object") {
      const values = Object.values(next);
      keys += values.length;
      for (const item of values) pending.push(item);
    }
  }
  return { nonFinite, unsafeInteger, keys };
}

/** The first name `text` (valid JSON) gives twice in one object, and "line L, column C" of its second time; undefined when none is. */
function repeatedNameAt(text: string): { name: string; at: string } | undefined {
  const objects: Set<string>[] = [];
  let found: { name: string; at: string } | undefined;
  jsonc().visit(text, {
    onObjectBegin: () => void objects.push(new Set()),
    onObjectEnd: () => void objects.pop(),
    onObjectProperty(name: string, offset: number) {
      const names = objects[objects.length - 1];
      if (found || !names) return;
      if (names.has(name)) found = { name, at: lineAndColumn(text, offset) };
      names.add(name);
    },
  });
  return found;
}

/** "line L, column C" of the first number literal in `text` (valid JSON) that parses as ±Infinity; undefined when none does. */
function infiniteNumberAt(text: string): string | undefined {
  let offset: number | undefined;
  jsonc().visit(text, {
    onLiteralValue(value: unknown, at: number) {
      if (offset === undefined && typeof value === "number" && !Number.isFinite(value)) offset = at;
    },
  });
  return offset === undefined ? undefined : lineAndColumn(text, offset);
}

/**
 * The first integer literal of `text` (digits only: no fraction, no exponent) past 2^53 that is
 * not written back as the same text (9007199254740993 parses as 2^53; 18446744073709551616, 2^64,
 * is written back as 18446744073709552000; the 36240783057721050 JSON.stringify wrote is written
 * back the same), where it is ("line L, column C") and what it would become.
 */
function inexactIntegerAt(text: string): { token: string; at: string; as: string } | undefined {
  let found: { token: string; at: string; as: string } | undefined;
  jsonc().visit(text, {
    onLiteralValue(value: unknown, offset: number, length: number) {
      if (found || typeof value !== "number" || Number.isSafeInteger(value) || !Number.isInteger(value)) return;
      const token = text.slice(offset, offset + length);
      // kept only when it is written back as the same text: 2^64, which a double holds, went out
      // as 18446744073709552000, another integer to a reader with integers wider than doubles
      if (/^-?\d+$/.test(token) && token !== String(value)) found = { token, at: lineAndColumn(text, offset), as: String(value) };
    },
  });
  return found;
}

/**
 * Where `text` stops being JSON and why, for the error of `parseJsonDocument`: " at line L,
 * column C (why)", both from 1, the column in characters (code points). JavaScriptCore's
 * JSON.parse gives no position, and for text after a complete document only "Unable to parse JSON
 * string"; jsonc-parser (strict: no comments, no trailing commas) finds the place. `engineMessage`
 * (the parser's own words) is the why, except where the place says more: a control character
 * (raw, or inside a string where it must be escaped), named by its code point, or text after a
 * complete document. A character the engine quotes is named by its code point unless it is
 * printable ASCII, so nothing invisible or bidirectional reaches a terminal or an answer.
 * Without a place found (the two parsers disagree), the engine's message alone.
 */
function syntaxErrorAt(text: string, engineMessage: string): string {
  // the engine may quote the offending character: anything but printable ASCII is named by its code point
  const why = oneLine(engineMessage.replace(/^JSON Parse error: /, "").replace(/[^\x20-\x7e]/gu, (c) => codePointName(c.codePointAt(0)!)));
  const errors: Jsonc.ParseError[] = [];
  const { parse, printParseErrorCode } = jsonc();
  parse(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  if (!first) return ` (${why})`;
  const code = printParseErrorCode(first.error);
  // jsonc puts a string's fault at its opening quote: the control character in it is the place
  const control =
    code === "InvalidCharacter" || code === "UnexpectedEndOfString" || code === "InvalidSymbol" ? controlCharacterFrom(text, first.offset) : undefined;
  if (control !== undefined) {
    const inString = text[first.offset] === '"';
    const name = codePointName(text.charCodeAt(control));
    return ` at ${lineAndColumn(text, control)} (a control character, ${name}, ${inString ? "inside a string: escape it, as \\n or \\u0009" : "outside any string"})`;
  }
  // a complete document before the place: what follows it is the fault, whatever it is
  if (code === "EndOfFileExpected" || isJson(text.slice(0, first.offset))) {
    return ` at ${lineAndColumn(text, first.offset)} (text after the document: one JSON document only)`;
  }
  return ` at ${lineAndColumn(text, first.offset)} (${why})`;
}

/** `U+0009`: a character named by its code point, for messages that must not hold it raw. */
function codePointName(codePoint: number): string {
  return `U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** True when `text` is one JSON document (surrounding whitespace allowed). */
function isJson(text: string): boolean {
  if (text.trim() === "") return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * The offset of the control character (U+0000 to U+001F, which JSON strings may not hold raw,
 * RFC 8259 §7) at `offset`, or within the string that opens there, up to its closing quote;
 * undefined when there is none.
 */
function controlCharacterFrom(text: string, offset: number): number | undefined {
  const isControl = (c: number) => c < 0x20;
  if (text[offset] !== '"') return isControl(text.charCodeAt(offset)) ? offset : undefined;
  for (let i = offset + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c /* backslash */) i++;
    else if (c === 0x22 /* " */) return undefined;
    else if (isControl(c)) return i;
  }
  return undefined;
}

/**
 * "line L, column C" of `offset` in `text`, both from 1, as an editor shows them: a line ends at
 * CR LF, LF or a lone CR (JSON's whitespace has all three, RFC 8259 §2); a column counts code points.
 */
function lineAndColumn(text: string, offset: number): string {
  const lines = text.slice(0, offset).split(/\r\n|\n|\r/);
  const line = lines.length;
  const column = Array.from(lines[line - 1]!).length + 1;
  return `line ${line}, column ${column}`;
}

/**
 * jsonc-parser, loaded on first use, on error paths only: as a static import its module cost
 * every command ~1.5 ms of start. Its ES module build: the bundler cannot follow the UMD build's
 * own requires.
 */
function jsonc(): typeof Jsonc {
  return require("jsonc-parser/lib/esm/main.js") as typeof Jsonc;
}

/**
 * A value from an application (the SDK's `collectMessage`) as JSON text, refused the same way a
 * text would be when it cannot become a document within the limits: nested deeper than
 * `maxDepth` (checked on the way down, so a 100,000-deep array never reaches the stack's end), a
 * BigInt, a NaN or an infinity (JSON has no such numbers; `JSON.stringify` would throw or write
 * `null` in their place), a structure that contains itself, a `toJSON` or getter that throws, a
 * built-in whose contents JSON would drop (a Map, a Set, a typed array or ArrayBuffer, a RegExp,
 * an Error, a Promise: written as `{}` or as an object of indexes), a member JSON would drop
 * or write as null (a function, a symbol, undefined in an array, an invalid Date, a `toJSON`
 * that gives nothing), or no value at all (undefined, a function, a symbol). Other objects
 * become what `JSON.stringify` makes of them (`toJSON` applied, so a Date is its ISO text and a
 * Buffer its `{type, data}`); an object member whose value is undefined is left out, as
 * `JSON.stringify` leaves it. Returns the compact text; throws
 * JsonDocumentError (an InputError: exit 65) naming `source` and, for a member, its path (`$.a[2]`).
 * Checks neither size nor, for a text, anything else: parse the result with `parseJsonDocument`.
 */
export function stringifyJsonValue(value: unknown, limits: Pick<JsonDocumentLimits, "maxDepth" | "source"> = {}): string {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  const source = limits.source ?? "the document";
  // Each object or array met, with where it sits: `this` in the replacer is the holder of the
  // member being written, and every holder but JSON.stringify's own root wrapper went through
  // the replacer first. An object met twice (not a cycle: stringify throws on those) is
  // written again at once, so its entry is the right one while its members are written.
  const placed = new WeakMap<object, { depth: number; path: string }>();
  const pathOf = (holder: object, key: string) => {
    const parent = placed.get(holder)?.path;
    if (parent === undefined) return "$"; // JSON.stringify's wrapper around the value itself
    if (Array.isArray(holder)) return `${parent}[${key}]`;
    return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key.length > 40 ? `${key.slice(0, 37)}...` : key)}]`;
  };
  function replacer(this: object, key: string, member: unknown): unknown {
    const depth = placed.get(this)?.depth ?? 0;
    const isRoot = placed.get(this) === undefined;
    if (!isRoot) {
      // Members JSON.stringify would drop or turn into null without a word: the document sent
      // would not be the one given. (Undefined object members stay out, as JSON.stringify does.)
      const given = (this as Record<string, unknown>)[key];
      if (typeof member === "function" || typeof member === "symbol") {
        throw new JsonDocumentError("not_json", `${source}: ${pathOf(this, key)} is a ${typeof member}, which JSON cannot carry`);
      }
      if (member === undefined && Array.isArray(this)) {
        throw new JsonDocumentError("not_json", `${source}: ${pathOf(this, key)} is undefined, which JSON would write as null`);
      }
      if (member === undefined && given !== undefined) {
        throw new JsonDocumentError("not_json", `${source}: ${pathOf(this, key)}: its toJSON() gave no value`);
      }
      if (given instanceof Date && Number.isNaN(given.getTime())) {
        throw new JsonDocumentError("not_json", `${source}: ${pathOf(this, key)} is an invalid Date, which JSON would write as null`);
      }
    }
    if (typeof member === "bigint") throw new JsonDocumentError("not_json", `${source}: ${pathOf(this, key)} is a BigInt, which JSON cannot carry`);
    if (typeof member === "number" && !Number.isFinite(member)) {
      throw new JsonDocumentError("not_json", `${source}: ${pathOf(this, key)} is ${member}, which JSON cannot carry`);
    }
    if (member !== null && typeof member === "object") {
      const lossy = lossyObjectName(member);
      if (lossy)
        throw new JsonDocumentError(
          "not_json",
          `${source}: ${pathOf(this, key)} is of type ${lossy}, which JSON cannot carry (it would be written as {}); make it a plain object or an array`,
        );
      if (depth + 1 > maxDepth) {
        throw new JsonDocumentError("too_deep", `${source}: arrays and objects nested more than ${maxDepth} levels deep (the limit)`);
      }
      placed.set(member, { depth: depth + 1, path: pathOf(this, key) });
    }
    return member;
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(value, replacer);
  } catch (err) {
    if (err instanceof JsonDocumentError) throw err;
    const message = (err as Error)?.message ?? String(err);
    if (/cyclic|circular/i.test(message)) throw new JsonDocumentError("not_json", `${source}: not JSON (it contains itself: a cyclic structure)`);
    throw new JsonDocumentError("not_json", `${source}: not JSON (${oneLine(message)})`);
  }
  if (text === undefined) throw new JsonDocumentError("not_json", `${source}: not a JSON value (${value === null ? "null" : typeof value})`);
  return text;
}

/**
 * The name of a built-in object that `JSON.stringify` writes as `{}` or as an object of its
 * indexes without a word (its contents live outside its own enumerable properties), or undefined
 * for any other object: plain ones, arrays, class instances (their own fields are their data).
 */
function lossyObjectName(value: object): string | undefined {
  if (
    value instanceof Map ||
    value instanceof Set ||
    value instanceof WeakMap ||
    value instanceof WeakSet ||
    value instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer === "function" && value instanceof SharedArrayBuffer) ||
    ArrayBuffer.isView(value) ||
    value instanceof RegExp ||
    value instanceof Error ||
    value instanceof Promise
  ) {
    return value.constructor?.name || Object.prototype.toString.call(value).slice(8, -1);
  }
  return undefined;
}

/**
 * `bytes` as text, strict UTF-8 (a leading BOM dropped): a byte that is not is never replaced
 * with U+FFFD and sent on. Throws InputError (65/400) naming `source`, the first bad byte's
 * offset and `consequence` (what was not done: "nothing was sent or queued").
 */
export function decodeUtf8(bytes: Uint8Array, source: string, consequence: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InputError(`${source}: not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8Byte(bytes)}); ${consequence}`);
  }
}

/** The offset of the first byte that is not part of a valid UTF-8 sequence. */
function firstInvalidUtf8Byte(bytes: Uint8Array): number {
  const lenient = Buffer.from(bytes).toString("utf8");
  let offset = 0;
  for (const char of lenient) {
    const size = Buffer.byteLength(char);
    // U+FFFD is also a valid character (EF BF BD): only a replacement that was not in the input counts
    if (char === "\uFFFD" && !(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)) return offset;
    offset += size;
  }
  return offset;
}

/**
 * An MQTT envelope's payload (collect-envelope.ts, test-message.ts) as a JSON object: strict
 * UTF-8, within `maxEnvelopeBytes(payloadLimitBytes)` and one level deeper than a message (the
 * message nests inside). Throws InputError naming the problem: not UTF-8, a JsonDocumentError
 * (source "the payload"), or not a JSON object.
 */
export function parseEnvelopeObject(payload: Uint8Array, payloadLimitBytes: number): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    throw new InputError("the payload is not valid UTF-8");
  }
  const value = parseJsonDocument(text, { maxBytes: maxEnvelopeBytes(payloadLimitBytes), maxDepth: MAX_JSON_DEPTH + ENVELOPE_DEPTH, source: "the payload" });
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new InputError("the payload is not a JSON object");
  return value as Record<string, unknown>;
}

/** A parser message on one line and short (it may quote a piece of the input). */
function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ");
  return flat.length > 120 ? `${flat.slice(0, 117)}...` : flat;
}
