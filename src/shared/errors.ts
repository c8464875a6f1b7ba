/**
 * One taxonomy of failures. Every error FlashLex reports carries a *kind*; the two edges map
 * the kind and nothing else: `main.ts` to an exit code (sysexits(3), src/cli/exit-codes.ts),
 * the hub's HTTP layer to a status code (src/hub/http/envelope.ts). Errors thrown by libraries (SQLite, OpenSSL,
 * the file system, YAML, cac) are given their kind in one place, `toFlashlexError` in
 * foreign-errors.ts, by what they are, not by where they were thrown. This module imports
 * nothing, so every layer may use it.
 */
/**
 * What went wrong, as the edges need to know it. Exit code / HTTP status:
 * - `usage`: unknown command, flag or flag value (64 / 400)
 * - `data`: the input itself is wrong (65 / 400)
 * - `conflict`: the input clashes with what exists: a name taken, an id used, a revoked thing (65 / 409)
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
export const ERROR_KINDS = [
  "usage",
  "data",
  "conflict",
  "unavailable",
  "bug",
  "io",
  "full",
  "read-only",
  "damaged",
  "try-later",
  "permission",
  "config",
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/** True when `value` names a kind (a kind that came over a wire is checked with this). */
export function isErrorKind(value: unknown): value is ErrorKind {
  return (ERROR_KINDS as readonly unknown[]).includes(value);
}

/**
 * An error that knows its kind. Its message is one line, safe to print (no key material, no
 * token), and names what is wrong and where: the file, the key path or the flag.
 */
export class FlashlexError extends Error {
  /**
   * The message may go to a remote client even for a server-side kind (the hub's HTTP API hides
   * 5xx messages, which may name paths): set only for messages that name a service, not a file.
   */
  readonly clientSafe: boolean;

  constructor(
    message: string,
    readonly kind: ErrorKind,
    options?: { cause?: unknown; clientSafe?: boolean },
  ) {
    super(message, options);
    this.name = "FlashlexError";
    this.clientSafe = options?.clientSafe ?? false;
  }
}

/** Kind `config` (78 / 500): the configuration, a key, a certificate, or a database of another kind. */
export class ConfigError extends FlashlexError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "config", options);
    this.name = "ConfigError";
  }
}

/** Kind `data` (65 / 400): the input itself is wrong. */
export class InputError extends FlashlexError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "data", options);
    this.name = "InputError";
  }
}

/** The input clashes with what exists (a name taken, an id already used, a revoked thing). */
export class ConflictError extends FlashlexError {
  constructor(message: string) {
    super(message, "conflict");
    this.name = "ConflictError";
  }
}

/** Kind `usage` (64 / 400): an unknown command, flag or flag value. */
export class UsageError extends FlashlexError {
  constructor(message: string) {
    super(message, "usage");
    this.name = "UsageError";
  }
}

/** The first line of a message, so a library's multi-line text never reaches stderr whole. */
export function oneLine(text: string): string {
  // every line terminator a terminal moves down at: CR alone too (it would overwrite the line)
  return (text.split(/\r\n|[\n\r\v\f\u0085\u2028\u2029]/).find((line) => line.trim()) ?? text).trim();
}
