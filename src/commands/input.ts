import { readFileSync } from "node:fs";
import { InputError, UsageError } from "../errors.ts";

/**
 * Reads a document from a file or stdin, stopping one byte past `limit` so an endless stdin
 * cannot fill memory; the caller's check reports a document that is too large.
 */
export async function readDocument(file: string | undefined, limit: number): Promise<string> {
  if (file) {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
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
