/**
 * YAML configuration files, loaded the one way the thing's config.yml and the hub's hub.yml both
 * are: bounded in size, strict UTF-8, one document, no duplicate keys, no alias bombs, then
 * validated against a declared zod schema. Every failure is one ConfigError (exit 78) naming the
 * file and, where there is one, the line or the key path.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type * as Yaml from "yaml";
import type { z } from "zod";
import { ConfigError, oneLine } from "./errors.ts";
import { writeFileAtomicallySync } from "./files.ts";
import { toFlashlexError } from "./foreign-errors.ts";
import { quoteGiven } from "./log.ts";
import { notThereNote } from "./path-exists.ts";
import { readRegularFile } from "./regular-file.ts";
import { nearestSpelling } from "./spelling.ts";
import { COMMIT, VERSION } from "./version.ts";
import { deniedNote } from "./why-denied.ts";

const MAX_CONFIG_BYTES = 1024 * 1024;

/** Reads and parses a YAML file; any failure is a one-line ConfigError naming the file (and line). */
export function parseYamlFile(file: string): unknown {
  return parseYamlText(readConfigText(file), file);
}

/** Where a configuration's interpretation is kept between processes (loadYamlFile). */
export interface ConfigCache {
  file: string;
  /** what made the interpretation (`thisBuild()`): a cache made by anything else is not used */
  madeBy: string;
  /** write the interpretation after a miss (its directory made, mode 0700) */
  update: boolean;
}

/**
 * Reads, parses and interprets a YAML configuration: `interpret` validates the parsed document
 * and gives what the program uses, or throws (ConfigError). With `cache`, a miss's result is kept
 * in `cache.file` with the exact text it came from, and a later load of the same text by the same
 * build takes it from there, without loading the YAML parser or the schemas.
 *
 * Why: parsing the YAML (the `yaml` library's first document: 10 to 30 ms of cold code in the
 * compiled binary on x64, more on a Pi) and loading the schemas (zod) are the slowest steps of a
 * command's start, where JSON.parse of the result takes a fraction of a millisecond. The result is
 * what `interpret` would give for that text: same text, same build. A result JSON cannot carry
 * exactly (.inf, .nan, -0) is not kept. A cache that is missing, damaged, stale or cannot be written is
 * ignored: it only saves time. Throws what `interpret` throws, and ConfigError for a file that
 * cannot be read or is not YAML.
 */
export function loadYamlFile<T>(file: string, interpret: (raw: unknown) => T, cache?: ConfigCache): T {
  const text = readConfigText(file);
  if (cache) {
    const cached = readConfigCache(cache, text);
    if (cached.hit) return cached.value as T;
  }
  const value = interpret(parseYamlText(text, file));
  if (cache?.update) writeConfigCache(cache, text, value);
  return value;
}

/** The file's text: bounded in size, a regular file, strict UTF-8; else a one-line ConfigError. */
function readConfigText(file: string): string {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(file, "configuration file", MAX_CONFIG_BYTES);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(`${file}: cannot read the configuration file${notThereNote(err, file)} (${code})${deniedNote(err, file)}`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError(`${file}: not valid UTF-8 text`);
  }
}

/**
 * The `yaml` library, loaded on first use: a start that the config cache serves never loads it
 * (its module alone is ~8 ms of a compiled command's start here). `require` of a bundled CommonJS
 * package is the bundler's own lazy loader, on Bun and in the Node build alike.
 */
function yamlLibrary(): typeof Yaml {
  return require("yaml") as typeof Yaml;
}

/**
 * `text` with every line break as LF. YAML 1.2 §5.4 takes CR LF, CR and LF alike as a line break;
 * the `yaml` library reads a lone CR (a file saved with classic Mac line ends) as part of the
 * line, so `a: 1<CR>b: 2` became the one key `a` holding `"1\rb": "2\r"`, and a config
 * failed its schema with a message about keys the file does not have.
 */
export function normaliseLineBreaks(text: string): string {
  return text.includes("\r") ? text.replace(/\r\n?/g, "\n") : text;
}

function parseYamlText(text: string, file: string): unknown {
  try {
    const doc = yamlLibrary().parseDocument(normaliseLineBreaks(text), { prettyErrors: true, uniqueKeys: true });
    const first = doc.errors[0];
    if (first) {
      const pos = first.linePos?.[0];
      const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
      throw new ConfigError(`${where}: invalid YAML: ${oneLine(first.message).replace(/ at line \d+, column \d+:?$/, "")}`);
    }
    // toJS refuses alias bombs ("Excessive alias count"); a document nested thousands deep
    // overflows the parser's stack: both are a file that cannot be a configuration
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const known = toFlashlexError(err);
    throw new ConfigError(
      `${file}: invalid YAML: ${known.kind === "config" ? known.message.replace(/^invalid YAML: /, "") : oneLine((err as Error)?.message ?? String(err))}`,
      { cause: err },
    );
  }
}

/**
 * What this build of flashlex names itself as a cache's maker: its version, its commit and its
 * executable's modification time (a rebuild from a working tree with uncommitted changes keeps
 * the commit's name, and a self-update replaces the file). Undefined in a source run, whose code
 * may change under the same name, and when the executable cannot be looked at.
 */
export function thisBuild(): string | undefined {
  if (COMMIT === "unknown") return undefined;
  try {
    return `flashlex ${VERSION} (${COMMIT}), ${process.execPath} of ${statSync(process.execPath).mtimeMs}`;
  } catch {
    return undefined;
  }
}

/** A cache holds the text (at most MAX_CONFIG_BYTES) and what it means: anything far larger is not one. */
const MAX_CACHE_BYTES = 4 * MAX_CONFIG_BYTES;

/**
 * A cache is used only when it is a regular file of a sane size (a FIFO or /dev/zero in its place
 * must not hang or fill memory) whose maker and text match and whose checksum holds: a file
 * damaged, cut short or edited by hand (still valid JSON) is a miss, never a half-read config.
 */
function readConfigCache(cache: ConfigCache, text: string): { hit: true; value: unknown } | { hit: false } {
  try {
    const stat = statSync(cache.file);
    if (!stat.isFile() || stat.size > MAX_CACHE_BYTES) return { hit: false };
    const kept = JSON.parse(readFileSync(cache.file, "utf8")) as { madeBy?: unknown; text?: unknown; value?: unknown; check?: unknown };
    if (kept.madeBy === cache.madeBy && kept.text === text && kept.check === checksum(cache.madeBy, text, JSON.stringify(kept.value))) {
      return { hit: true, value: kept.value };
    }
  } catch {
    // none yet, or not ours: interpreted afresh
  }
  return { hit: false };
}

/**
 * FNV-1a (32 bits) of what a cache says, to tell a damaged or edited file from a good one: not a
 * defence against its owner, who may as well edit config.yml, so no cryptographic hash (and no
 * node:crypto, whose loading costs more than the cache saves).
 */
function checksum(madeBy: string, text: string, valueJson: string): string {
  let hash = 0x811c9dc5;
  for (const part of [madeBy, text, valueJson]) {
    for (let i = 0; i < part.length; i++) hash = Math.imul(hash ^ part.charCodeAt(i), 0x01000193);
    hash = Math.imul(hash, 0x01000193); // a NUL between the parts: "ab"+"c" and "a"+"bc" differ
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

function writeConfigCache(cache: ConfigCache, text: string, value: unknown): void {
  try {
    const valueJson = JSON.stringify(value);
    const json = JSON.stringify({ madeBy: cache.madeBy, text, value, check: checksum(cache.madeBy, text, valueJson) });
    // node:util only here, where serve writes the cache: loading it costs every command ~1 ms
    const { isDeepStrictEqual } = require("node:util") as typeof import("node:util");
    if (!isDeepStrictEqual((JSON.parse(json) as { value: unknown }).value, value)) return;
    mkdirSync(dirname(cache.file), { recursive: true, mode: 0o700 });
    writeFileAtomicallySync(cache.file, json, 0o600);
  } catch {
    // a read-only or unreachable directory: the next start interprets again
  }
}

/**
 * Validates against a schema. The error (ConfigError, one line) names the file and every failing
 * key path with what is wrong there, each path once: `hub.yml: hub.env: letters, digits, - and _
 * only; must not be empty; hub.api.port: ...` — never a bare "(and 1 more)" that hides the rest.
 */
export function validate<S extends z.ZodType>(schema: S, raw: unknown, file: string): z.output<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  // "(top level): Invalid input: expected object, received null" named no key to fix
  if (raw === null || raw === undefined) throw new ConfigError(`${file}: the file is empty: it holds no settings`);
  const byPath = new Map<string, string[]>();
  for (const issue of result.error.issues) {
    const path = issue.path.length ? issue.path.join(".") : "(top level)";
    const said = byPath.get(path) ?? [];
    const text = describeIssue(issue, raw, schema);
    if (!said.includes(text)) said.push(text);
    byPath.set(path, said);
  }
  throw new ConfigError(`${file}: ${[...byPath].map(([path, said]) => `${path}: ${said.join("; ")}`).join("; ")}`);
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, schema: z.ZodType): string {
  const value = valueAt(raw, issue.path);
  // a schema's own words say what to write (`keepFor`); zod's default ones ("Invalid input: ...",
  // "Invalid URL") name neither what to write nor what was found: said here with the value
  const zodsOwn = /^(Invalid|Too (small|big))\b/.test(issue.message);
  if (issue.code === "invalid_type" && value === undefined) {
    const missing = zodsOwn ? `missing (expected ${issue.expected})` : `missing: ${issue.message}`;
    return missing + misspeltAs(schema, raw, issue.path);
  }
  // a database URL may hold a password, in its userinfo or its query (`?password=`): never said
  if (!zodsOwn) return issue.path.includes("database") ? issue.message : withFound(issue.message, value);
  if (issue.code === "invalid_type") return `expected ${expectedWords(issue.expected)}, not ${shownValue(value)}`;
  if (issue.code === "invalid_format" && issue.format === "url") return `expected ${urlWords(protocolAt(schema, issue.path))}, not ${shownValue(value)}`;
  if (issue.code === "too_small" || issue.code === "too_big") return boundWords(issue, value);
  return `${issue.message.charAt(0).toLowerCase()}${issue.message.slice(1)} (it is ${shownValue(value)})`;
}

/**
 * A schema's own words for what to write, with what the file holds there (`a duration from 1d
 * to 36500d, such as 365d (it is 30)`), unless they already say it; a list or keys under it are
 * left unsaid, as their words say what they lack.
 */
function withFound(words: string, value: unknown): string {
  if (value === undefined || (value !== null && typeof value === "object")) return words;
  if (value === "") return /\bempty\b/.test(words) ? words : `${words} (it is empty)`;
  const shown = shownValue(value);
  // a number may be in the words by chance (365 in "such as 365d"): only quoted text counts as said
  return typeof value === "string" && words.includes(shown) ? words : `${words} (it is ${shown})`;
}

/**
 * The protocol pattern of the `z.url()` at `path` (keys and list indexes from the top): zod's
 * issue carries it only when the URL parsed and its scheme was wrong.
 */
function protocolAt(schema: z.ZodType, path: readonly PropertyKey[]): string | undefined {
  return schemaAt(schema, path)?.def?.protocol?.source;
}

/** The URL a key takes, from its protocol pattern (`^https?$`: "an http:// or https:// URL"). */
function urlWords(pattern: string | undefined): string {
  const scheme = pattern && /^\^([a-z]+)(s\?)?\$$/.exec(pattern);
  if (!scheme) return "a URL";
  const schemes = scheme[2] ? [scheme[1], `${scheme[1]}s`] : [scheme[1]];
  return `an ${schemes.map((name) => `${name}://`).join(" or ")} URL`;
}

/**
 * A bound zod found crossed, in a config file reader's words, with what `value` is: "must not be
 * empty", "must be at most 65535 (it is 70000)", "must list at least 1 (it lists 0)".
 */
function boundWords(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, value: unknown): string {
  const small = issue.code === "too_small";
  const bound = Number(small ? issue.minimum : issue.maximum);
  const relation = small ? (issue.inclusive ? "at least" : "more than") : issue.inclusive ? "at most" : "less than";
  if (issue.origin === "string" && small && bound === 1) return "must not be empty";
  if (issue.origin === "string") return `must be ${relation} ${bound} characters (it is ${shownValue(value)}, ${String(value).length})`;
  if (Array.isArray(value)) return `must list ${relation} ${bound} (it lists ${value.length})`;
  return `must be ${relation} ${bound} (it is ${shownValue(value)})`;
}

/** zod's name of a type, as a config file's reader says it. */
function expectedWords(expected: string): string {
  const words: Record<string, string> = {
    number: "a number",
    int: "a whole number",
    string: "text",
    boolean: "true or false",
    object: "keys under it",
    array: "a list",
  };
  return words[expected] ?? expected;
}

/**
 * A value found in a config file, as a refusal names it: text quoted and cut, the rest by kind.
 * A URL's query and fragment are left out (`?key=...` may be a secret; its userinfo quoteGiven masks).
 */
function shownValue(value: unknown): string {
  if (typeof value === "string") return quoteGiven(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value.replace(/[?#].*$/s, "?…") : value);
  if (value === null) return "empty";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "keys under it";
  return String(value);
}

/**
 * For a required key that is missing: "; the key P is there: rename it to K" when the object
 * that lacks K holds a key it does not declare at most two letters off (`endpont` for
 * `endpoint`), which is then most likely where the value was meant to go; else "".
 */
function misspeltAs(schema: z.ZodType, raw: unknown, path: PropertyKey[]): string {
  const key = path[path.length - 1];
  const holderPath = path.slice(0, -1);
  const holder = valueAt(raw, holderPath);
  const declared = objectAt(schema, holderPath)?.shape;
  if (typeof key !== "string" || !declared || holder === null || typeof holder !== "object" || Array.isArray(holder)) return "";
  const near = nearestSpelling(
    key,
    Object.keys(holder).filter((k) => !Object.hasOwn(declared, k)),
  );
  return near === undefined ? "" : `; the key ${[...holderPath, near].join(".")} is there: rename it to ${key}`;
}

function valueAt(raw: unknown, path: PropertyKey[]): unknown {
  let node = raw;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** Key paths in `raw` that the schema's objects do not declare (they are ignored, with a warning). */
export function unknownKeys(schema: z.ZodType, raw: unknown, prefix = ""): string[] {
  const objectSchema = unwrapToObject(schema);
  if (!objectSchema || raw === null || typeof raw !== "object" || Array.isArray(raw)) return [];
  const shape = objectSchema.shape as Record<string, z.ZodType>;
  return Object.entries(raw as Record<string, unknown>).flatMap(([key, value]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    // own keys only: `constructor` or `toString` in the file is unknown, not the shape's prototype's
    const child = Object.hasOwn(shape, key) ? shape[key] : undefined;
    return child ? unknownKeys(child, value, path) : [path];
  });
}

/**
 * What the warning about an unknown key (`unknownKeys`) says of it: "ignored", with "; did you
 * mean P?" when the object that holds it declares a key at most two letters off (P its path:
 * `flashlex.app.callback` for `flashlex.app.calback`).
 */
export function unknownKeyNote(schema: z.ZodType, path: string): string {
  const meant = meantKey(schema, path);
  return meant === undefined ? "ignored" : `ignored; did you mean ${meant}?`;
}

/** The path of the declared key at most two letters off the unknown key at `path`, in the same object; undefined when none is near. */
function meantKey(schema: z.ZodType, path: string): string | undefined {
  const keys = path.split(".");
  const object = objectAt(schema, keys.slice(0, -1));
  const meant = object && nearestSpelling(keys[keys.length - 1]!, Object.keys(object.shape));
  return meant === undefined ? undefined : [...keys.slice(0, -1), meant].join(".");
}

/**
 * The first of `unknown` (paths from `unknownKeys`) that is a misspelling of a key the file does
 * not set (`hub.api.prot` beside no `port`): ignoring it would quietly put the default in place of
 * what was written. Undefined when every unknown key is only extra (its near key is set too, or
 * none is near).
 */
export function misspeltKey(schema: z.ZodType, raw: unknown, unknown: readonly string[]): { key: string; meant: string } | undefined {
  for (const key of unknown) {
    const meant = meantKey(schema, key);
    if (meant !== undefined && valueAt(raw, meant.split(".")) === undefined) return { key, meant };
  }
  return undefined;
}

/** The object schema at `path` (keys from the top), or undefined when the path leaves the objects (an array, an unknown key). */
function objectAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodObject | undefined {
  const node = schemaAt(schema, path);
  return node?.shape ? (node as unknown as z.ZodObject) : undefined;
}

function unwrapToObject(schema: z.ZodType): z.ZodObject | undefined {
  return objectAt(schema, []);
}

/** A schema as this module walks it: an object's `shape`, a list's `def.element`, a URL's `def.protocol`. */
interface SchemaNode {
  unwrap?: () => SchemaNode;
  shape?: Record<string, SchemaNode>;
  def?: { element?: SchemaNode; protocol?: RegExp };
}

/** The schema at `path` (object keys and list indexes from the top), its optional, default and prefault wrappers taken off; undefined when the path leaves it. */
function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): SchemaNode | undefined {
  // each wrapper has `unwrap()`; so has a list (its element), which an index takes instead
  const bare = (node: SchemaNode | undefined) => {
    while (node && typeof node.unwrap === "function" && !node.shape && !node.def?.element) node = node.unwrap();
    return node;
  };
  let node = bare(schema as unknown as SchemaNode);
  for (const key of path) {
    const next = typeof key === "number" ? node?.def?.element : node?.shape && Object.hasOwn(node.shape, key) ? node.shape[key as string] : undefined;
    node = bare(next);
  }
  return node;
}
