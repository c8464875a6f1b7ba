/**
 * The one place where errors thrown by libraries get their kind (src/shared/errors.ts): SQLite (both
 * drivers), the file system and sockets (errno codes), OpenSSL/BoringSSL and TLS, YAML and cac.
 * Each answer is a kind and a one-line reason in plain words that still carries the library's
 * code, so a user can search for it; callers put the file or key path in front.
 *
 * `toFlashlexError` is what every layer calls on a caught value to give it its kind.
 */
import { type ErrorKind, FlashlexError, oneLine } from "./errors.ts";
import { cutGiven } from "./log.ts";
import { danglingTarget, fileOnTheWay, pathKind, unreachableTarget } from "./path-exists.ts";
import { whyDenied } from "./why-denied.ts";

export interface ForeignError {
  kind: ErrorKind;
  /** one line, without the place: "the file system is full (SQLITE_FULL)" */
  reason: string;
  /** the path the error itself names (errno errors carry one), when it does */
  where?: string;
}

/** Classifies a library's error; undefined when it is none of the kinds known here. */
export function classifyForeign(err: unknown): ForeignError | undefined {
  if (err === null || typeof err !== "object") return undefined;
  return classifySqlite(err) ?? classifyErrno(err) ?? classifyTls(err) ?? classifyYaml(err) ?? classifyCli(err);
}

// ---------------------------------------------------------------------------------------------
// SQLite: bun:sqlite throws `SQLiteError` with `code` ("SQLITE_FULL", extended codes such as
// "SQLITE_IOERR_WRITE" too); node-sqlite3-wasm (armv7) throws `SQLite3Error` with only
// sqlite3_errmsg() text, which for these failures is sqlite3_errstr() of the code.

const SQLITE_TEXT_TO_CODE: [RegExp, string][] = [
  [/^database or disk is full/, "SQLITE_FULL"],
  [/^attempt to write a readonly database/, "SQLITE_READONLY"],
  [/^database disk image is malformed/, "SQLITE_CORRUPT"],
  [/^file is not a database/, "SQLITE_NOTADB"],
  [/^database is locked/, "SQLITE_BUSY"],
  [/^database table is locked/, "SQLITE_LOCKED"],
  [/^(unable to open database file|Could not open the database)/, "SQLITE_CANTOPEN"],
  [/^disk I\/O error/, "SQLITE_IOERR"],
  [/^access permission denied/, "SQLITE_PERM"],
  [/^authorization denied/, "SQLITE_AUTH"],
  [/^string or blob too big/, "SQLITE_TOOBIG"],
  [/^out of memory/, "SQLITE_NOMEM"],
  [/^interrupted/, "SQLITE_INTERRUPT"],
  [/^locking protocol/, "SQLITE_PROTOCOL"],
];

/** The SQLite result code name of a driver's error ("SQLITE_FULL"), or undefined if it is not one. */
export function sqliteCodeOf(err: object): string | undefined {
  const e = err as { name?: unknown; code?: unknown; message?: unknown };
  if (e.name === "SQLiteError" && typeof e.code === "string" && e.code.startsWith("SQLITE_")) return e.code;
  if (e.name === "SQLite3Error" && typeof e.message === "string") {
    return SQLITE_TEXT_TO_CODE.find(([pattern]) => pattern.test(e.message as string))?.[1] ?? "SQLITE_ERROR";
  }
  return undefined;
}

function classifySqlite(err: object): ForeignError | undefined {
  const code = sqliteCodeOf(err);
  if (!code) return undefined;
  const primary = code.replace(/^(SQLITE_[A-Z]+?)(_[A-Z_]+)?$/, "$1");
  const message = oneLine(String((err as Error).message ?? ""));
  const known: Record<string, [ErrorKind, string]> = {
    SQLITE_FULL: ["full", "cannot write: the file system is full"],
    SQLITE_READONLY: ["read-only", "cannot write: the database or its directory is read-only"],
    // what to do about it depends on which database it is: the driver adds that (storage-errors.ts)
    SQLITE_CORRUPT: ["damaged", "the database file is damaged"],
    SQLITE_NOTADB: ["damaged", "not a SQLite database, or its header is damaged"],
    SQLITE_BUSY: ["try-later", "the database is locked by another process; try again"],
    SQLITE_LOCKED: ["try-later", "the database is locked by another process; try again"],
    SQLITE_CANTOPEN: ["io", "cannot open the database file"],
    SQLITE_IOERR: ["io", "the disk failed to read or write the database"],
    SQLITE_PERM: ["permission", "access to the database was denied"],
    SQLITE_AUTH: ["permission", "access to the database was denied"],
    SQLITE_TOOBIG: ["data", "a value is too large for the database"],
    SQLITE_NOMEM: ["try-later", "out of memory"],
    SQLITE_INTERRUPT: ["try-later", "interrupted"],
    SQLITE_PROTOCOL: ["try-later", "the database lock changed hands too often; try again"],
  };
  // RAISE(ABORT, ...) in a trigger someone added to the file: the database's own refusal, not FlashLex's SQL
  if (code === "SQLITE_CONSTRAINT_TRIGGER") return { kind: "io", reason: `a trigger in the database refused the statement: ${message} (${code})` };
  const entry = known[primary];
  // SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_MISUSE...: SQL that FlashLex got wrong
  if (!entry) return { kind: "bug", reason: `SQLite: ${message} (${code})` };
  return { kind: entry[0], reason: `${entry[1]} (${code})` };
}

// ---------------------------------------------------------------------------------------------
// errno: node:fs, node:net and friends put the POSIX error name in `code` and the path in `path`.

const ERRNO: Record<string, [ErrorKind, string]> = {
  EACCES: ["permission", "permission denied"],
  EPERM: ["permission", "operation not permitted"],
  EROFS: ["read-only", "read-only file system"],
  ENOSPC: ["full", "no space left on the device"],
  EDQUOT: ["full", "disk quota exceeded"],
  EFBIG: ["full", "file too large"],
  EIO: ["io", "input/output error"],
  ENOENT: ["io", "no such file or directory"],
  ENOTDIR: ["io", "a part of the path is not a directory"],
  EISDIR: ["io", "is a directory"],
  ELOOP: ["io", "too many symbolic links"],
  ENAMETOOLONG: ["io", "the path is too long"],
  EEXIST: ["io", "already exists"],
  ENOTEMPTY: ["io", "the directory is not empty"],
  ENXIO: ["io", "no such device"],
  ENODEV: ["io", "no such device"],
  EXDEV: ["io", "cannot move across file systems"],
  EINVAL: ["io", "invalid argument"],
  EBADF: ["io", "bad file descriptor"],
  ETXTBSY: ["try-later", "the file is busy"],
  EBUSY: ["try-later", "the device or resource is busy"],
  EMFILE: ["try-later", "too many open files"],
  ENFILE: ["try-later", "too many open files in the system"],
  ENOMEM: ["try-later", "out of memory"],
  EAGAIN: ["try-later", "resource temporarily unavailable"],
  EADDRINUSE: ["unavailable", "the address is already in use"],
  EADDRNOTAVAIL: ["config", "the address is not available on this machine"],
  ECONNREFUSED: ["unavailable", "connection refused"],
  ECONNRESET: ["unavailable", "connection reset"],
  ECONNABORTED: ["unavailable", "connection aborted"],
  ETIMEDOUT: ["unavailable", "timed out"],
  EHOSTUNREACH: ["unavailable", "host unreachable"],
  ENETUNREACH: ["unavailable", "network unreachable"],
  ENOTFOUND: ["unavailable", "host not found"],
  EAI_AGAIN: ["unavailable", "host name lookup failed, try again"],
  EPIPE: ["unavailable", "the other end closed the connection"],
};

function classifyErrno(err: object): ForeignError | undefined {
  const e = err as NodeJS.ErrnoException & { dest?: string };
  if (typeof e.code !== "string") return undefined;
  // A write to a named file (/dev/stdout, a FIFO: files.ts names it) whose reader went away
  // (`| head -c 10`, an `unzip` that gave up): the output is cut short, an I/O failure (74),
  // not a service that is down (69), which is what EPIPE means on a network connection.
  if (e.code === "EPIPE" && typeof e.path === "string" && e.path.startsWith("/"))
    return { kind: "io", reason: "the reader closed the pipe before the end (EPIPE)", where: e.path };
  const entry = ERRNO[e.code];
  if (!entry) return undefined;
  // "a part of the path is not a directory": which part
  const inTheWay = e.code === "ENOTDIR" && typeof e.path === "string" ? fileOnTheWay(e.path) : undefined;
  if (inTheWay !== undefined) return { kind: entry[0], reason: `${inTheWay} is a file, not a directory (ENOTDIR)`, where: e.path };
  // a directory was to be made where a file is
  if (e.code === "EEXIST" && e.syscall === "mkdir" && typeof e.path === "string") {
    if (isFile(e.path)) return { kind: entry[0], reason: "a file, not a directory (EEXIST)", where: e.path };
    const target = danglingTarget(e.path);
    if (target !== undefined) return { kind: entry[0], reason: `a symbolic link to ${target}, which does not exist (EEXIST)`, where: e.path };
    const hidden = unreachableTarget(e.path);
    if (hidden !== undefined) {
      const why = whyDenied(hidden);
      return { kind: "permission", reason: `a symbolic link to ${hidden}, which this user may not reach${why ? `: ${why}` : ""} (EACCES)`, where: e.path };
    }
  }
  const where = typeof e.path === "string" ? e.path : undefined;
  // whose the file, or the directory on the way, is: the chown or chmod that fixes it is then plain
  const why = where !== undefined && (e.code === "EACCES" || e.code === "EPERM") ? whyDenied(where) : undefined;
  return { kind: entry[0], reason: `${entry[1]} (${e.code})${why ? `: ${why}` : ""}`, where };
}

/** True when `path` names something that is not a directory; false when it cannot be told. */
function isFile(path: string): boolean {
  try {
    return pathKind(path) === "other";
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// OpenSSL (Node) and BoringSSL (Bun): building a TLS context from bad PEM material throws at
// once (ERR_OSSL_*, ERR_BORINGSSL): the configured key, certificate or CA is wrong. A failed
// handshake (ERR_SSL_*, ERR_TLS_*, certificate verification codes) means the peer and we do not
// agree: the service is unusable as configured now.

const OPENSSL_REASONS: Record<string, string> = {
  KEY_VALUES_MISMATCH: "the private key does not belong to the certificate",
  NO_START_LINE: "no PEM block where one was expected (not a PEM file, or the wrong kind of PEM)",
  DECODE_ERROR: "a PEM block holds bytes that are not a valid certificate or key",
  BAD_BASE64_DECODE: "a PEM block is not valid base64",
  BAD_END_LINE: "a PEM block is cut short",
  UNSUPPORTED_ALGORITHM: "the key uses an algorithm TLS here does not support",
  BAD_DECRYPT: "the private key is encrypted (FlashLex needs an unencrypted key)",
  BAD_PASSWORD_READ: "the private key is encrypted (FlashLex needs an unencrypted key)",
};

const TLS_VERIFY_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
]);

/** The code of a failed TLS handshake (the peer's certificate refused, or no TLS spoken), or undefined for any other error. */
export function tlsHandshakeCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || isTlsMaterialError(err)) return undefined;
  return code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_") || TLS_VERIFY_CODES.has(code) ? code : undefined;
}

/** True for an error from building a TLS context out of PEM text (bad key, certificate or CA). */
export function isTlsMaterialError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("ERR_OSSL_") || code === "ERR_BORINGSSL");
}

function classifyTls(err: object): ForeignError | undefined {
  const e = err as { code?: unknown; reason?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? e.code : undefined;
  if (!code) return undefined;
  if (isTlsMaterialError(err)) {
    const reason = typeof e.reason === "string" ? e.reason : undefined;
    const words =
      (reason && OPENSSL_REASONS[reason]) ??
      (code === "ERR_BORINGSSL" && /CA/.test(String(e.message)) ? "the CA file holds no valid certificate" : undefined) ??
      `the TLS library refused a key or certificate${reason ? ` (${reason.toLowerCase().replace(/_/g, " ")})` : ""}`;
    return { kind: "config", reason: `${words} (${code})` };
  }
  if (tlsHandshakeCode(err)) {
    return { kind: "unavailable", reason: `the TLS handshake failed: ${oneLine(String(e.message ?? code))} (${code})` };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// YAML (the `yaml` package) and the command line (cac).

function classifyYaml(err: object): ForeignError | undefined {
  const e = err as Error;
  if (e.name === "YAMLParseError" || e.name === "YAMLWarning" || e.name === "YAMLException") {
    return { kind: "config", reason: `invalid YAML: ${oneLine(e.message)}` };
  }
  // the yaml package's guard against alias bombs ("billion laughs")
  if (e.name === "ReferenceError" && /alias/i.test(e.message)) return { kind: "config", reason: `invalid YAML: ${oneLine(e.message)}` };
  return undefined;
}

function classifyCli(err: object): ForeignError | undefined {
  const e = err as Error;
  // cac names an unknown option as it stores it, camelCased: `--payloadLimit` for --payload-limit.
  // Only a capital after a letter or digit is cac's: `--Dir` and `--DIR` were typed so. A flag
  // longer than any of ours is cut, as quoteGiven cuts a value.
  if (e.name === "CACError")
    return {
      kind: "usage",
      reason: oneLine(
        e.message.replace(/`(-[^`]+)`/g, (_, flag: string) => `\`${cutGiven(flag.replace(/(?<=[a-z0-9])[A-Z]/g, (c) => `-${c.toLowerCase()}`))}\``),
      ),
    };
  return undefined;
}

// ---------------------------------------------------------------------------------------------

/**
 * Gives any thrown value its kind: a FlashlexError as it is; a library's error (SQLite, OpenSSL,
 * file system, YAML, cac) by what it is, with a one-line message (prefixed with `where`, a file
 * or a key path, when the caller knows it); anything else is a bug, with its first line.
 */
export function toFlashlexError(err: unknown, where?: string): FlashlexError {
  if (err instanceof FlashlexError) return err;
  const known = classifyForeign(err);
  if (known) {
    const place = where ?? known.where;
    return new FlashlexError(place ? `${place}: ${known.reason}` : known.reason, known.kind, { cause: err });
  }
  const first = oneLine(err instanceof Error ? err.message || err.name : String(err));
  return new FlashlexError(where ? `${where}: ${first}` : first, "bug", { cause: err });
}

/**
 * `err` with its kind and `note` after its message: what the failure means for what the user was
 * already shown (`...: the file system is full (SQLITE_FULL); the token shown above was not
 * stored`). The original is the cause.
 */
function withNote(err: unknown, note: string): FlashlexError {
  const known = toFlashlexError(err);
  return new FlashlexError(`${known.message}; ${note}`, known.kind, { cause: err, clientSafe: known.clientSafe });
}

/**
 * Stores a secret that may already have been shown (`shown`: a token, a one-time line): when
 * `store` fails after it was, the error says so with `note` ("the token shown above was not
 * stored and does not work: ..."), or its reader would go on using it (attack round 27, F2).
 */
export async function storeAfterShowing(shown: boolean, store: () => Promise<unknown>, note: string): Promise<void> {
  try {
    await store();
  } catch (err) {
    throw shown ? withNote(err, note) : err;
  }
}
