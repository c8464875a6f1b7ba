import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { decodeUtf8 } from "../protocol/limits.ts";
import { FlashlexError, InputError, UsageError } from "../shared/errors.ts";
import { quoteGiven } from "../shared/log.ts";
import { fileOnTheWayNote } from "../shared/path-exists.ts";
import { utcFromParts } from "../shared/time.ts";

/**
 * Reads a document from a file or stdin, stopping one byte past `limit` so that neither an
 * endless stdin nor a huge (or endless: a FIFO, /dev/zero) file can fill memory; the caller's
 * check reports a document that is too large. A regular file's own size is checked first, so
 * the error can name it. The text must be valid UTF-8 (RFC 3629; a leading BOM is dropped):
 * anything else is refused naming the source and the byte offset, never silently turned into
 * U+FFFD. Throws InputError (exit 65) for a document larger than `limit` bytes (a regular
 * file's line names its size; stdin's says "more than", as reading stopped there) and for text
 * that is not UTF-8, FlashlexError of kind io (74) or permission (77) for a file that cannot be
 * read.
 */
export async function readDocument(file: string | undefined, limit: number): Promise<string> {
  const source = sourceName(file);
  const bytes = source === "stdin" ? await readStdin(limit) : readFileBounded(source, limit);
  // Reading stopped past the limit: how much more there was is not known, and not worth reading.
  if (bytes.length > limit) throw new InputError(`${source}: more than ${limit} bytes, over the ${limit}-byte limit; nothing was sent or queued`);
  return decodeUtf8(bytes, source, "nothing was sent or queued");
}

/**
 * Whether stdin is a terminal: a character device other than the memory devices (major 1:
 * /dev/null, /dev/zero), which is what a tty or pty is. One fstat, where `isatty` would load
 * node:tty into every collect.
 */
function stdinIsTerminal(): boolean {
  try {
    const st = fstatSync(0);
    return st.isCharacterDevice() && Math.floor(st.rdev / 256) % 4096 !== 1;
  } catch {
    return false;
  }
}

/** What a document given with `--file` (or without it) is called in messages: the file, or "stdin" (no flag, or `--file -`). */
export function sourceName(file: string | undefined): string {
  return file === undefined || file === "-" ? "stdin" : file;
}

function readFileBounded(file: string, limit: number): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const stat = fstatSync(fd);
    if (stat.isFile() && stat.size > limit) throw new InputError(`${file}: ${stat.size} bytes is over the ${limit}-byte limit; nothing was sent or queued`);
    return readBounded(fd, limit + 1);
  } catch (err) {
    if (err instanceof InputError) throw err;
    // The path given with --file is not a file (a typo, a directory): the command line is wrong
    // (64), as for -o. One that cannot be read is a permission (77) or I/O (74) problem.
    const code = (err as NodeJS.ErrnoException).code;
    const inTheWay = fileOnTheWayNote(err, file);
    if (inTheWay) throw new UsageError(`--file ${file}${inTheWay}`);
    if (code === "ENOENT" || code === "ENOTDIR") throw new UsageError(`--file ${file}: no such file`);
    if (code === "EISDIR") throw new UsageError(`--file ${file}: a directory, not a file`);
    // open(2) of a Unix socket: the path names no file at all (it read as an I/O fault, 74)
    if (code === "ENXIO") throw new UsageError(`--file ${file}: a socket, not a file`);
    throw new FlashlexError(`${file}: cannot read (${code ?? "error"})`, code === "EACCES" || code === "EPERM" ? "permission" : "io", { cause: err });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

async function readStdin(limit: number): Promise<Buffer> {
  // At a terminal, with nothing piped in, it waited without a word (new-user pass 22, F9).
  if (stdinIsTerminal()) process.stderr.write("flashlex: reading the JSON document from stdin: type it and end with Ctrl-D, or pipe it in, or give --file\n");
  // Bun's own stdin stream: process.stdin loads Node's stream machinery first, a fifth of a
  // one-shot `collect`'s start (CPU profile of the compiled binary). Node (armv7) has it loaded.
  const source: AsyncIterable<Uint8Array> = typeof Bun === "undefined" ? process.stdin : Bun.stdin.stream();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of source) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) break;
    }
  } catch (err) {
    // `< somedir` in the shell: the runtime's error names no file, so the line says it was stdin
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EISDIR") throw new UsageError("stdin: a directory, not a file (what the shell's < names)");
    throw new FlashlexError(`stdin: cannot read (${code ?? (err as Error).message})`, code === "EACCES" || code === "EPERM" ? "permission" : "io", {
      cause: err,
    });
  }
  return Buffer.concat(chunks);
}

/**
 * A count flag (`--limit`): a whole number from 1 to `max`, in decimal digits. Anything else
 * (text, 0, negative, a fraction, too large) is a UsageError (exit 64) naming the flag.
 */
export function countFlag(value: unknown, flag: string, max = 1_000_000_000): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(`${flag} must be a whole number from 1 to ${max}, not ${quoteGiven(text)}`);
  }
  return Number(text);
}

/** Up to `max` bytes from `fd`, read until end of file or `max`. */
function readBounded(fd: number, max: number): Buffer {
  const buffer = Buffer.alloc(Math.min(max, 64 * 1024));
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < max) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, max - total), null);
    if (n === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, n)));
    total += n;
  }
  return Buffer.concat(chunks);
}

/**
 * `--since`/`--until`: Unix seconds, or an ISO 8601 date or date-time (UTC unless it says
 * otherwise), as Unix seconds. With `endOfDay`, a bare date means the end of that day, so
 * `--until 2024-01-31` includes all of January 31st.
 */
export function parseTime(value: string | undefined, flag: string, endOfDay = false): number | undefined {
  if (value === undefined) return undefined;
  value = String(value);
  if (/^\d{1,12}$/.test(value)) return Number(value);
  // ISO 8601 only: Date.parse also takes other shapes ("-1" is 2001-01-01 in Bun, "Dec 2" a
  // date in 2001), and reads a date-time without a zone as local time, not UTC
  const iso = ISO_DATE_TIME.exec(value);
  // Date.parse rolls 2026-02-30 over into March: each part is checked first.
  const [year, month, day] = (iso?.[1] ?? "").split("-").map(Number);
  const [hour = 0, minute = 0, second = 0] = (iso?.[2] ?? "").split(":").map((part) => Math.floor(Number(part)));
  const real = iso !== null && !Number.isNaN(utcFromParts(year!, month!, day!, hour, minute, second));
  const ms = real ? Date.parse(`${iso[1]}T${iso[2] ?? "00:00:00"}${isoZone(iso[3])}`) : Number.NaN;
  if (Number.isNaN(ms) || Math.abs(ms) > 8.64e15)
    throw new UsageError(`${flag} must be Unix seconds or an ISO date (2024-01-31 or 2024-01-31T12:00:00Z), not ${quoteGiven(value)}`);
  return Math.floor(ms / 1000) + (!iso![2] && endOfDay ? 86_399 : 0);
}

/** An ISO 8601 date, with a time (T or a space between) and a zone if any: date, time, zone. */
const ISO_DATE_TIME = /^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)([Zz]|[+-]\d{2}:?\d{2})?)?$/;

/** A zone as Date.parse takes it: Z when there is none (UTC, as the flags say), ±hh:mm otherwise. */
function isoZone(zone: string | undefined): string {
  if (!zone || zone === "z" || zone === "Z") return "Z";
  return zone.includes(":") ? zone : `${zone.slice(0, 3)}:${zone.slice(3)}`;
}

/**
 * `--since` and `--until` together (parseTime each): Unix seconds, either may be absent. Throws
 * UsageError (64) naming both flags when `--since` is after `--until`: such a range matches
 * nothing, and an empty export that exits 0 hides the typo.
 */
export function parseTimeRange(since: string | undefined, until: string | undefined): { startts?: number; endts?: number } {
  const startts = parseTime(since, "--since", false);
  const endts = parseTime(until, "--until", true);
  if (startts !== undefined && endts !== undefined && startts > endts) {
    throw new UsageError(`--since ${since} is after --until ${until}: the range holds no time; swap them or widen it`);
  }
  return { startts, endts };
}
