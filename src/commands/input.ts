import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { InputError, UsageError } from "../errors.ts";

/**
 * Reads a document from a file or stdin, stopping one byte past `limit` so that neither an
 * endless stdin nor a huge (or endless: a FIFO, /dev/zero) file can fill memory; the caller's
 * check reports a document that is too large. A regular file's own size is checked first, so
 * the error can name it. Throws InputError (exit 65) for a file that cannot be read or is larger
 * than `limit` bytes.
 */
export async function readDocument(file: string | undefined, limit: number): Promise<string> {
  if (file) {
    let fd: number | undefined;
    try {
      fd = openSync(file, "r");
      const stat = fstatSync(fd);
      if (stat.isFile() && stat.size > limit) throw new InputError(`${file}: ${stat.size} bytes is over the ${limit}-byte limit`);
      return readBounded(fd, limit + 1).toString("utf8");
    } catch (err) {
      if (err instanceof InputError) throw err;
      throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > limit) break;
  }
  return Buffer.concat(chunks).toString("utf8");
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
  if (/^\d{1,12}$/.test(value)) return Number(value);
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(value);
  const ms = Date.parse(dateOnly ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(ms)) throw new UsageError(`${flag} must be Unix seconds or an ISO date (2024-01-31 or 2024-01-31T12:00:00Z), not ${value}`);
  return Math.floor(ms / 1000) + (dateOnly && endOfDay ? 86_399 : 0);
}
