/**
 * Downloads a release binary into a file, checking its size and SHA-256 as it streams: at most
 * `size` bytes are written (a longer answer is cut off and refused), and the file is synced
 * before the digest is compared. TLS verification is always on; `extraCaPem` (the hub's CA) is
 * trusted next to the public roots. Bun's fetch in Bun builds, node:http(s) on Node (armv7).
 */

import { createHash } from "node:crypto";
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { classifyForeign } from "../../shared/foreign-errors.ts";
import { describeError } from "../../shared/log.ts";

export interface DownloadOptions {
  headers: Record<string, string>;
  extraCaPem?: string;
  /** the whole download, in ms */
  timeoutMs: number;
  /** the manifest's size and SHA-256 (hex) */
  size: number;
  sha256: string;
  /** aborts the download (serve stopping): the file is removed and the abort's reason thrown */
  signal?: AbortSignal;
}

/** Thrown when the bytes are not what the manifest says (refused: retrying the same file cannot help). */
export class DownloadRefused extends Error {}

/**
 * Thrown when the download cannot be written beside the binary (EACCES, EROFS, ENOSPC...): the
 * device's own problem, which the next check would only meet again after downloading as much,
 * so it is reported like a refusal. The message names the directory and the reason.
 */
export class DownloadNotWritable extends Error {}

/**
 * Writes the body of GET `url` to `file` (created 0700, exclusively) and checks it. On any
 * failure `file` is removed and the error thrown: DownloadRefused for a size or digest mismatch,
 * DownloadNotWritable when the file system refuses the file, the signal's reason once aborted,
 * Error for HTTP statuses and the network.
 */
export async function downloadVerified(url: string, file: string, opts: DownloadOptions): Promise<void> {
  const fd = local(file, () => openSync(file, "wx", 0o700));
  const hash = createHash("sha256");
  let written = 0;
  const write = (chunk: Uint8Array) => {
    if (written + chunk.length > opts.size) throw new DownloadRefused(`the hub sent more than the signed ${opts.size} bytes`);
    hash.update(chunk);
    let offset = 0;
    while (offset < chunk.length) offset += local(file, () => writeSync(fd, chunk, offset, chunk.length - offset));
    written += chunk.length;
  };
  try {
    if (typeof Bun === "undefined") await streamWithNode(url, opts, write);
    else await streamWithFetch(url, opts, write);
    local(file, () => fsyncSync(fd));
    if (written !== opts.size) throw new DownloadRefused(`the download has ${written} bytes, the signed manifest says ${opts.size}`);
    const digest = hash.digest("hex");
    if (digest !== opts.sha256) throw new DownloadRefused(`SHA-256 mismatch: the download is ${digest}, the signed manifest says ${opts.sha256}`);
  } catch (err) {
    closeSync(fd);
    rmSync(file, { force: true });
    throw err;
  }
  closeSync(fd);
}

/** `fn`, a file system call on the download: what it throws becomes DownloadNotWritable. */
function local<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const reason = classifyForeign(err)?.reason ?? describeError(err);
    throw new DownloadNotWritable(`cannot write the download in ${dirname(file)}: ${reason}`, { cause: err });
  }
}

async function streamWithFetch(url: string, opts: DownloadOptions, write: (chunk: Uint8Array) => void): Promise<void> {
  const https = url.startsWith("https:");
  const ca = https && opts.extraCaPem ? [...(await import("node:tls")).rootCertificates, opts.extraCaPem] : undefined;
  const response = await fetch(url, {
    headers: opts.headers,
    redirect: "manual",
    signal: opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]) : AbortSignal.timeout(opts.timeoutMs),
    ...(https ? { tls: { ca, rejectUnauthorized: true } } : {}),
  });
  if (response.status !== 200 || !response.body) {
    throw answerError(response.status, response.statusText, await response.text().catch(() => ""));
  }
  for await (const chunk of response.body) write(chunk);
}

async function streamWithNode(url: string, opts: DownloadOptions, write: (chunk: Uint8Array) => void): Promise<void> {
  const https = url.startsWith("https:");
  const client = https ? await import("node:https") : await import("node:http");
  const ca = https && opts.extraCaPem ? [...(await import("node:tls")).rootCertificates, opts.extraCaPem] : undefined;
  await new Promise<void>((resolve, reject) => {
    const request = client.get(
      url,
      { headers: opts.headers, timeout: opts.timeoutMs, signal: opts.signal, ...(https ? { ca, rejectUnauthorized: true } : {}) },
      (response) => {
        if (response.statusCode !== 200) {
          let text = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (text = (text + chunk).slice(0, 4096)));
          response.on("end", () => reject(answerError(response.statusCode ?? 0, response.statusMessage ?? "", text)));
          return;
        }
        response.on("data", (chunk: Buffer) => {
          try {
            write(chunk);
          } catch (err) {
            request.destroy();
            reject(err);
          }
        });
        response.on("end", resolve);
        response.on("error", reject);
      },
    );
    request.on("timeout", () => request.destroy(new Error(`no complete answer within ${Math.round(opts.timeoutMs / 1000)} s`)));
    request.on("error", reject);
  });
}

/**
 * The error for an answer other than 200: 404 and 410 (the hub has no such binary: a release
 * whose files were removed) are DownloadRefused, reported failed with the hub's own words, for
 * asking again cannot help until the operator adds the release again; any other status is a
 * plain Error, tried again at the next check.
 */
function answerError(status: number, statusText: string, body: string): Error {
  let said: string | undefined;
  try {
    said = (JSON.parse(body) as { messages?: { value?: unknown }[] }).messages?.[0]?.value as string | undefined;
  } catch {
    // not the hub's envelope
  }
  const text = `the hub answered ${status} ${statusText}`.trim() + (typeof said === "string" ? `: ${said}` : "");
  return status === 404 || status === 410 ? new DownloadRefused(text) : new Error(text);
}
