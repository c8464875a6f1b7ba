/**
 * One line per event on stderr, `key=value` pairs after a short event name (logfmt), so that
 * journald, grep and humans all read it. Under systemd (JOURNAL_STREAM is set) each line starts
 * with a `<N>` syslog priority that journald turns into the entry's priority, and the timestamp
 * is left to journald; on a terminal the line starts with an ISO timestamp and the level.
 *
 * Secrets never reach a log: values under keys that name one are replaced before formatting.
 */
export type Level = "debug" | "info" | "warn" | "error";
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

function formatValue(value: unknown): string {
  if (value instanceof Error) value = value.message;
  if (value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}

export function formatFields(fields: Fields): string {
  return Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${SECRET_KEY.test(k) ? "[redacted]" : formatValue(v)}`)
    .join(" ");
}

export function createLogger(options: LoggerOptions = {}, base: Fields = {}): Logger {
  const threshold = ORDER[options.level ?? levelFromEnv()];
  const journald = options.journald ?? Boolean(process.env.JOURNAL_STREAM);
  const write = options.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const now = options.now ?? (() => new Date());

  const emit = (level: Level, event: string, fields: Fields = {}) => {
    if (ORDER[level] < threshold) return;
    const rest = formatFields({ ...base, ...fields });
    const body = rest ? `${event} ${rest}` : event;
    write(journald ? `<${PRIORITY[level]}>${body}` : `${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${body}`);
  };

  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
    child: (fields) => createLogger(options, { ...base, ...fields }),
  };
}

function levelFromEnv(): Level {
  const level = process.env.FLASHLEX_LOG_LEVEL;
  return level === "debug" || level === "warn" || level === "error" ? level : "info";
}

/** A logger that drops everything, for library users who do not want output. */
export const silentLogger: Logger = createLogger({ write: () => {} });
