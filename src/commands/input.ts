import { closeSync, openSync, readSync } from "node:fs";
import { InputError, UsageError } from "../errors.ts";

/**
 * Reads a document from a file or stdin, stopping one byte past `limit` so an endless input
 * (stdin, /dev/zero) cannot fill memory. The text must be valid UTF-8 (RFC 3629; a leading BOM
 * is dropped): anything else is an InputError (exit 65) naming the source and the byte offset,
 * never silently turned into U+FFFD. A document over the limit comes back as decoded as it can
 * be, longer than `limit` bytes, for the caller's size check to report.
 */
export async function readDocument(file: string | undefined, limit: number): Promise<string> {
  const source = file ?? "stdin";
  const bytes = file === undefined ? await readStdin(limit) : readFileLimited(file, limit);
  if (bytes.length > limit) return Buffer.from(bytes).toString("utf8");
  return decodeUtf8(bytes, source);
}

/** Decodes strict UTF-8; throws InputError naming `source` and the first bad byte's offset. */
export function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InputError(`${source}: not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8Byte(bytes)}); nothing was sent or queued`);
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

async function readStdin(limit: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > limit) break;
  }
  return Buffer.concat(chunks);
}

function readFileLimited(file: string, limit: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const buffer = Buffer.alloc(limit + 1);
    let size = 0;
    while (size < buffer.length) {
      const n = readSync(fd, buffer, size, buffer.length - size, null);
      if (n === 0) break;
      size += n;
    }
    return buffer.subarray(0, size);
  } catch (err) {
    throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  } finally {
    closeSync(fd);
  }
}

/**
 * A count flag (`--limit`): a whole number from 1 to `max`, in decimal digits. Anything else
 * (text, 0, negative, a fraction, too large) is a UsageError (exit 64) naming the flag.
 */
export function countFlag(value: unknown, flag: string, max = 1_000_000_000): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(`${flag} must be a whole number from 1 to ${max}, not ${JSON.stringify(text)}`);
  }
  return Number(text);
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
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const ms = Date.parse(dateOnly ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(ms) || Math.abs(ms) > 8.64e15) throw new UsageError(`${flag} must be Unix seconds or an ISO date (2024-01-31 or 2024-01-31T12:00:00Z), not ${value}`);
  return Math.floor(ms / 1000) + (dateOnly && endOfDay ? 86_399 : 0);
}
