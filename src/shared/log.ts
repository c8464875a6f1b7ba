import { ConfigError } from "./errors.ts";
import { redactUrl } from "./redact-url.ts";

/**
 * One line per event on stderr, `key=value` pairs after a short event name (logfmt), so that
 * journald, grep and humans all read it. Under systemd (JOURNAL_STREAM is set) each line starts
 * with a `<N>` syslog priority that journald turns into the entry's priority, and the timestamp
 * is left to journald; on a terminal the line starts with an ISO timestamp and the level.
 *
 * Secrets never reach a log: values under keys that name one are replaced before formatting.
 */
/** The levels, lowest first: what FLASHLEX_LOG_LEVEL may say. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LOG_LEVELS)[number];
export type Fields = Record<string, unknown>;

const PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6, debug: 7 };
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const SECRET_KEY = /(token|secret|password|authorization|private|jwt|bearer)/i;

export interface Logger {
  debug(event: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** where lines go; stderr unless a test wants them */
  write?: (line: string) => void;
  journald?: boolean;
  now?: () => Date;
}

/**
 * What never reaches a log line raw, wherever a value came from (a request path, a header, an
 * MQTT client id or topic): C0 controls (NUL, BEL, ESC, newline...), DEL and the C1 controls
 * (\p{Cc}), format characters such as bidi overrides and zero-width marks (\p{Cf}), the line and
 * paragraph separators U+2028/U+2029, and lone surrogates (\p{Cs}; a valid pair is one astral
 * code point and does not match). One event is always one printable line.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
/** Left unquoted: printable ASCII except space, `"`, `=` and `\`. */
const BARE_VALUE = /^[!#-<>-[\]-~]+$/;
const BARE_KEY = /^[A-Za-z0-9_.-]+$/;

/** True when `text` holds a character UNSAFE names: printed as it is, it could break or forge a line. */
export function hasUnsafeCharacters(text: string): boolean {
  return UNSAFE_ONE.test(text);
}
const UNSAFE_ONE = new RegExp(UNSAFE.source, "u");

/**
 * `text` as a JSON string literal (RFC 8259) in which every UNSAFE character is a `\uXXXX`
 * escape (both halves for an astral one): `JSON.parse` gives `text` back exactly.
 */
export function quoteLogText(text: string): string {
  // JSON.stringify escapes C0, `"`, `\` and lone surrogates; the rest of UNSAFE is escaped here.
  return JSON.stringify(text).replace(UNSAFE, unicodeEscape);
}

/** The most of a value a refusal quotes back, in characters: a 5,000-character flag value was echoed whole. */
const MAX_QUOTED = 48;

/**
 * `value` as a refusal quotes what it was given: in JSON quotes, cut at MAX_QUOTED characters
 * with `…` (inside the quotes, so a cut value is not mistaken for the whole).
 */
export function quoteGiven(value: string): string {
  return JSON.stringify(cutGiven(value));
}

/**
 * `value` cut at MAX_QUOTED characters with `…`, unquoted: for a refusal that names a flag or id
 * as typed (`--metrics 9x:`). Never between the two halves of a surrogate pair (an emoji's lone
 * half showed as an escape the user never typed); a flag or a joined emoji may still lose its
 * second character.
 */
export function cutGiven(value: string): string {
  if (value.length <= MAX_QUOTED) return value;
  const split = /[\uD800-\uDBFF]/.test(value[MAX_QUOTED - 1]!);
  return `${value.slice(0, split ? MAX_QUOTED - 1 : MAX_QUOTED)}…`;
}

/**
 * `text` with every UNSAFE character as a `\uXXXX` escape and nothing else changed: one
 * printable line whatever a message quotes (a path holding a newline or a terminal escape), for
 * text that is not a value to quote (the one stderr line of a failure: cli/process-entry.ts).
 */
export function escapeUnsafe(text: string): string {
  return UNSAFE_ONE.test(text) ? text.replace(UNSAFE, unicodeEscape) : text;
}

function unicodeEscape(ch: string): string {
  let escaped = "";
  for (let i = 0; i < ch.length; i++) escaped += `\\u${ch.charCodeAt(i).toString(16).padStart(4, "0")}`;
  return escaped;
}

function formatValue(value: unknown): string {
  // an error as one line with its code: logged as the object, it keeps its kind for whoever
  // counts the line (the agent's flashlex_agent_errors_total)
  if (value instanceof Error) value = describeError(value);
  if (value === undefined) return "";
  let text: string;
  // a URL with a password that slipped into a message (a driver's error text) loses it here
  if (typeof value === "string") text = redactUrl(value);
  else {
    try {
      // undefined for functions and symbols; throws for a bigint or a cycle
      text = JSON.stringify(value) ?? String(value);
    } catch {
      try {
        text = String(value);
      } catch {
        text = "[unprintable]";
      }
    }
  }
  return BARE_VALUE.test(text) ? text : quoteLogText(text);
}

/** A key or an event name: bare when it is a plain identifier, else quoted like a value. */
function formatName(name: string): string {
  return BARE_KEY.test(name) ? name : quoteLogText(name);
}

/**
 * `key=value` pairs separated by spaces. Values that are not plain printable ASCII are quoted
 * as JSON strings with every control or invisible character escaped (see UNSAFE), so a line
 * holds no control character and no line break whatever the fields; keys are escaped the same
 * way. Values under keys that name a secret are `[redacted]`.
 */
export function formatFields(fields: Fields): string {
  // a loop, not entries/filter/map/join: the hub formats a line per request
  let text = "";
  for (const k of Object.keys(fields)) {
    const v = fields[k];
    if (v === undefined) continue;
    text += `${text ? " " : ""}${formatName(k)}=${SECRET_KEY.test(k) ? "[redacted]" : formatValue(v)}`;
  }
  return text;
}

/** The level as a line shows it, padded to one width. */
const LEVEL_LABEL: Record<Level, string> = { debug: "DEBUG", info: "INFO ", warn: "WARN ", error: "ERROR" };

/** `date`'s ISO 8601 text, made once per millisecond: the hub writes many lines in one (toISOString was 2% of its time). */
const isoText = (() => {
  let lastMs = Number.NaN;
  let lastText = "";
  return (date: Date) => {
    const ms = date.getTime();
    if (ms !== lastMs) {
      lastMs = ms;
      lastText = date.toISOString();
    }
    return lastText;
  };
})();

/**
 * Writes a line to stderr, one write(2) per turn of the event loop when lines come in bursts: the
 * hub logs a line per request, and a write per line was a tenth of its time at 32 connections
 * (CPU profile). A line with nothing pending goes out at once, so a lone line keeps its place
 * among a command's other output; the lines after it in the same turn go out together when the
 * turn ends (setImmediate), or when the process exits first.
 */
const writeStderrLine = (() => {
  let pending: string[] = [];
  let turnStarted = false;
  let exitHooked = false;
  let errorHooked = false;
  // A log that cannot be written (stderr piped to a reader that went away: EPIPE; a full disk)
  // loses its lines, never the process: serve must go on storing messages without its log.
  const write = (text: string) => {
    if (!errorHooked) process.stderr.on("error", () => {}), (errorHooked = true);
    try {
      process.stderr.write(text);
    } catch {
      // the same, thrown at once by a synchronous stream (a file or device)
    }
  };
  const flush = () => {
    turnStarted = false;
    if (pending.length === 0) return;
    const text = pending.join("");
    pending = [];
    write(text);
  };
  return (line: string) => {
    if (!turnStarted) {
      turnStarted = true;
      setImmediate(flush);
      write(`${line}\n`);
      return;
    }
    if (!exitHooked) process.on("exit", flush), (exitHooked = true);
    pending.push(`${line}\n`);
  };
})();

/**
 * Lines from `options.level` up (default: FLASHLEX_LOG_LEVEL, `logLevelFromEnv`), journald's form
 * when JOURNAL_STREAM is set; `base` fields go on every line, `child` adds more. On stderr, a line
 * that cannot be written is lost, not thrown. Throws ConfigError (78) when no level is given and
 * FLASHLEX_LOG_LEVEL is not one (main.ts checks it before any command runs, so a command never
 * meets it half way).
 */
export function createLogger(options: LoggerOptions = {}, base: Fields = {}): Logger {
  const level = options.level ?? logLevelFromEnv();
  const threshold = ORDER[level];
  const journald = options.journald ?? Boolean(process.env.JOURNAL_STREAM);
  const write = options.write ?? writeStderrLine;
  const now = options.now ?? (() => new Date());

  const emit = (level: Level, event: string, fields: Fields = {}) => {
    if (ORDER[level] < threshold) return;
    const rest = formatFields({ ...base, ...fields });
    const name = formatName(event);
    const body = rest ? `${name} ${rest}` : name;
    write(journald ? `<${PRIORITY[level]}>${body}` : `${isoText(now())} ${LEVEL_LABEL[level]} ${body}`);
  };

  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
    child: (fields) => createLogger({ ...options, level }, { ...base, ...fields }),
  };
}

/**
 * The level FLASHLEX_LOG_LEVEL (in `env`) names: debug, info, warn or error; info when it is unset
 * or empty (as a shell leaves a variable it clears). Throws ConfigError (78) naming the variable,
 * its value and the accepted ones for anything else: a typo (`DEBUG`, `warning`) was read as info
 * without a word, so the operator who asked for debug lines to find a fault never saw them.
 */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): Level {
  const value = env.FLASHLEX_LOG_LEVEL;
  if (value === undefined || value === "") return "info";
  const level = LOG_LEVELS.find((l) => l === value);
  if (level) return level;
  throw new ConfigError(`$FLASHLEX_LOG_LEVEL is ${quoteLogText(cutGiven(value))}; it takes ${LOG_LEVELS.join(", ")} (unset: info)`);
}

/** A logger that drops everything, for library users who do not want output (whatever FLASHLEX_LOG_LEVEL says). */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });

/**
 * `log`, with `tap` told of every warn and error event (its level, name and fields) before it is
 * written, children included: how a metrics registry learns of the last error without every
 * caller knowing about metrics. A tap that throws is ignored; the line is written all the same.
 */
export function tapLogger(log: Logger, tap: (level: "warn" | "error", event: string, fields: Fields) => void): Logger {
  const tell = (level: "warn" | "error", event: string, fields: Fields = {}) => {
    try {
      tap(level, event, fields);
    } catch {
      // metrics must never disturb the log
    }
  };
  return {
    debug: (e, f) => log.debug(e, f),
    info: (e, f) => log.info(e, f),
    warn: (e, f) => {
      tell("warn", e, f);
      log.warn(e, f);
    },
    error: (e, f) => {
      tell("error", e, f);
      log.error(e, f);
    },
    child: (fields) => tapLogger(log.child(fields), tap),
  };
}

/** An error as one phrase: its message and, when it has one, its `code` (TLS and socket errors carry their reason there). */
export function describeError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = e?.code ? ` (${e.code})` : "";
  return `${e?.message ?? String(err)}${code}`;
}
