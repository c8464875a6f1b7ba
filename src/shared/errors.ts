/**
 * One taxonomy of failures. Every error FlashLex reports carries a *kind*; the two edges map
 * the kind and nothing else: `main.ts` to an exit code (sysexits(3), so systemd, shells and
 * scripts can tell a bad config, never worth restarting, from a broker that is down, worth
 * retrying), the hub's HTTP layer to a status code. Errors thrown by libraries (SQLite, OpenSSL,
 * the file system, YAML, cac) are given their kind in one place, `toFlashlexError` in
 * foreign-errors.ts, by what they are, not by where they were thrown. This module imports
 * nothing, so every layer may use it.
 */
export const ExitCode = {
  OK: 0,
  /** bootstrap: at least one self-test check failed */
  CHECK_FAILED: 1,
  USAGE: 64,
  /** bad input data: not JSON, not UTF-8, too large, unknown message id */
  DATA: 65,
  /** the service could not be reached; the message is queued and `serve` delivers it later */
  UNAVAILABLE: 69,
  /** an unexpected internal error (a bug): please report it */
  SOFTWARE: 70,
  /** a file could not be read or written: disk full, read-only, damaged database */
  IO: 74,
  /** try again later: the outbox is full, the database is busy, another serve runs */
  TEMPFAIL: 75,
  PERMISSION: 77,
  CONFIG: 78,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * What went wrong, as the edges need to know it. Exit code / HTTP status:
 * - `usage`: unknown command, flag or flag value (64 / 400)
 * - `data`: the input itself is wrong (65 / 400)
 * - `unavailable`: a service (broker, API, systemd) cannot be reached (69 / 503)
 * - `bug`: nothing else fits: a bug in FlashLex (70 / 500)
 * - `io`: a file could not be read or written for another reason (74 / 500)
 * - `full`: the file system is full (74 / 503)
 * - `read-only`: the file system or file is read-only (74 / 503)
 * - `damaged`: a database file is damaged or is not a SQLite database (74 / 500)
 * - `try-later`: busy now, may pass: database locked, outbox full, another serve (75 / 503)
 * - `permission`: the OS refused access (77 / 500)
 * - `config`: the configuration, a key, a certificate or a database of another kind (78 / 500)
 */
export const ERROR_KINDS = ["usage", "data", "unavailable", "bug", "io", "full", "read-only", "damaged", "try-later", "permission", "config"] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/** True when `value` names a kind (a kind that came over a wire is checked with this). */
export function isErrorKind(value: unknown): value is ErrorKind {
  return (ERROR_KINDS as readonly unknown[]).includes(value);
}

export const EXIT_CODE_OF_KIND: Record<ErrorKind, ExitCode> = {
  usage: ExitCode.USAGE,
  data: ExitCode.DATA,
  unavailable: ExitCode.UNAVAILABLE,
  bug: ExitCode.SOFTWARE,
  io: ExitCode.IO,
  full: ExitCode.IO,
  "read-only": ExitCode.IO,
  damaged: ExitCode.IO,
  "try-later": ExitCode.TEMPFAIL,
  permission: ExitCode.PERMISSION,
  config: ExitCode.CONFIG,
};

/** The kind an exit code stands for, for code that still names an exit code (and old callers). */
const KIND_OF_EXIT_CODE: Record<number, ErrorKind> = {
  [ExitCode.USAGE]: "usage",
  [ExitCode.DATA]: "data",
  [ExitCode.UNAVAILABLE]: "unavailable",
  [ExitCode.SOFTWARE]: "bug",
  [ExitCode.IO]: "io",
  [ExitCode.TEMPFAIL]: "try-later",
  [ExitCode.PERMISSION]: "permission",
  [ExitCode.CONFIG]: "config",
};

/**
 * An error that knows its kind. Its message is one line, safe to print (no key material, no
 * token), and names what is wrong and where: the file, the key path or the flag. The second
 * argument is the kind, or (as older callers write it) the exit code it means.
 */
export class FlashlexError extends Error {
  readonly kind: ErrorKind;

  constructor(message: string, kindOrExitCode: ErrorKind | ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FlashlexError";
    this.kind = typeof kindOrExitCode === "string" ? kindOrExitCode : (KIND_OF_EXIT_CODE[kindOrExitCode] ?? "bug");
  }

  get exitCode(): ExitCode {
    return EXIT_CODE_OF_KIND[this.kind];
  }
}

export class ConfigError extends FlashlexError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "config", options);
    this.name = "ConfigError";
  }
}

export class InputError extends FlashlexError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "data", options);
    this.name = "InputError";
  }
}

export class UsageError extends FlashlexError {
  constructor(message: string) {
    super(message, "usage");
    this.name = "UsageError";
  }
}

/** The first line of a message, so a library's multi-line text never reaches stderr whole. */
export function oneLine(text: string): string {
  return (text.split(/\r?\n/).find((line) => line.trim()) ?? text).trim();
}
