/**
 * YAML configuration files, loaded the one way the thing's config.yml and the hub's hub.yml both
 * are: bounded in size, strict UTF-8, one document, no duplicate keys, no alias bombs, then
 * validated against a declared zod schema. Every failure is one ConfigError (exit 78) naming the
 * file and, where there is one, the line or the key path.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { isDeepStrictEqual } from "node:util";
import type * as Yaml from "yaml";
import yamlPackage from "yaml/package.json" with { type: "json" };
import { z } from "zod";
import { ConfigError, oneLine } from "./errors.ts";
import { writeFileAtomicallySync } from "./files.ts";
import { toFlashlexError } from "./foreign-errors.ts";
import { COMMIT, VERSION } from "./version.ts";

const MAX_CONFIG_BYTES = 1024 * 1024;

// A configuration is validated once per process: zod's JIT (a `new Function` compiled per schema)
// costs more than it saves, about 8 ms of a one-shot `collect` in the compiled binary.
z.config({ jitless: true });

/**
 * Reads and parses a YAML file; any failure is a one-line ConfigError naming the file (and line).
 * With `cache`, the parsed document is taken from `cache.file` when it was parsed from this very
 * text by this very build (the parse cache, below), and with `cache.update` kept there after a
 * parse (its directory made, mode 0700, as the process that updates it would make it anyway).
 */
export function parseYamlFile(file: string, cache?: { file: string; update: boolean }): unknown {
  let bytes: Buffer;
  try {
    // a device (-c /dev/zero) or a huge file would be read forever or fill memory
    const stat = statSync(file);
    if (!stat.isFile()) throw new ConfigError(`${file}: not a regular file`);
    if (stat.size > MAX_CONFIG_BYTES) throw new ConfigError(`${file}: ${stat.size} bytes is too large for a configuration file (at most ${MAX_CONFIG_BYTES})`);
    bytes = readFileSync(file);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(`${file}: cannot read the configuration file (${code})`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError(`${file}: not valid UTF-8 text`);
  }
  if (!cache) return parseYamlText(text, file);
  const cached = readParseCache(cache.file, text);
  if (cached.hit) return cached.value;
  const value = parseYamlText(text, file);
  if (cache.update) writeParseCache(cache.file, text, value);
  return value;
}

/**
 * The `yaml` library, loaded on first use: a start that the parse cache serves never loads it
 * (its module alone is ~8 ms of a compiled command's start here). `require` of a bundled CommonJS
 * package is the bundler's own lazy loader, on Bun and in the Node build alike.
 */
function yamlLibrary(): typeof Yaml {
  return require("yaml") as typeof Yaml;
}

function parseYamlText(text: string, file: string): unknown {
  try {
    const doc = yamlLibrary().parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    const first = doc.errors[0];
    if (first) {
      const pos = first.linePos?.[0];
      const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
      throw new ConfigError(`${where}: invalid YAML: ${first.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`);
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
 * The parse cache. The `yaml` library's first document in a process is the slowest step of a
 * command's start (10 to 30 ms of cold code in the compiled binary, on x64: more on a Pi), where
 * JSON.parse of the same data takes a fraction of a millisecond, and a thing's config.yml is
 * parsed by every serve start and every command that opens the thing without serve. So the
 * parsed document is kept as JSON with the exact text it came from and the parser that made it
 * (this build and the yaml library's version), and used only when both still match: the value
 * is the one the parse would give. A document JSON cannot carry exactly (.inf, .nan, -0) is not
 * kept. A cache that is missing, damaged, stale or cannot be written is ignored: it only saves time.
 */
const PARSER = `flashlex ${VERSION} (${COMMIT}), yaml ${yamlPackage.version}`;

function readParseCache(cacheFile: string, text: string): { hit: true; value: unknown } | { hit: false } {
  try {
    const cache = JSON.parse(readFileSync(cacheFile, "utf8")) as { parser?: unknown; text?: unknown; value?: unknown };
    if (cache.parser === PARSER && cache.text === text) return { hit: true, value: cache.value };
  } catch {
    // none yet, or not ours: parsed afresh
  }
  return { hit: false };
}

function writeParseCache(cacheFile: string, text: string, value: unknown): void {
  try {
    const json = JSON.stringify({ parser: PARSER, text, value });
    if (!isDeepStrictEqual((JSON.parse(json) as { value: unknown }).value, value)) return;
    mkdirSync(dirname(cacheFile), { recursive: true, mode: 0o700 });
    writeFileAtomicallySync(cacheFile, json, 0o600);
  } catch {
    // a read-only or missing directory: the next start parses again
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
  const byPath = new Map<string, string[]>();
  for (const issue of result.error.issues) {
    const path = issue.path.length ? issue.path.join(".") : "(top level)";
    const said = byPath.get(path) ?? [];
    const text = describeIssue(issue, raw);
    if (!said.includes(text)) said.push(text);
    byPath.set(path, said);
  }
  throw new ConfigError(`${file}: ${[...byPath].map(([path, said]) => `${path}: ${said.join("; ")}`).join("; ")}`);
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  if (issue.code === "invalid_type" && valueAt(raw, issue.path) === undefined) {
    return `missing (expected ${issue.expected})`;
  }
  return issue.message;
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
    const child = shape[key];
    return child ? unknownKeys(child, value, path) : [path];
  });
}

function unwrapToObject(schema: z.ZodType): z.ZodObject | undefined {
  // Optional, default and prefault wrappers each have `unwrap()`; the object inside has `shape`.
  let current = schema as unknown as { unwrap?: () => unknown; shape?: unknown } | undefined;
  while (current && typeof current.unwrap === "function" && !current.shape) current = current.unwrap() as typeof current;
  return current?.shape ? (current as unknown as z.ZodObject) : undefined;
}
