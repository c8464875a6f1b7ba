import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { rootCertificates } from "node:tls";

export interface PostResult {
  status: number;
  statusText: string;
  body: string;
  /** the answer's headers, names in lower case (`date`, `www-authenticate`) */
  headers: IncomingHttpHeaders;
}

/**
 * Sends a request (POST with a body, or GET) and reads the answer (at most 1 MiB).
 * node:http(s) rather than fetch: it takes extra trusted CAs the same way in Bun and in Node
 * (the armv7 build), so a hub serving HTTPS with its own CA is trusted next to the public
 * roots, and TLS verification stays on. Rejects on network errors and after `timeoutMs`.
 */
export function requestText(
  url: string,
  opts: { method?: "POST" | "GET"; headers?: Record<string, string>; body?: string; extraCaPem?: string; timeoutMs: number },
): Promise<PostResult> {
  const body = opts.body ?? "";
  const target = new URL(url);
  const isHttps = target.protocol === "https:";
  const request = isHttps ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      {
        method: opts.method ?? "POST",
        headers: { ...opts.headers, ...(body ? { "Content-Length": String(Buffer.byteLength(body)) } : {}) },
        ...(isHttps ? { ca: opts.extraCaPem ? [...rootCertificates, opts.extraCaPem] : undefined, rejectUnauthorized: true } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size <= 1024 * 1024) chunks.push(chunk);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? "", body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }),
        );
        res.on("error", reject);
      },
    );
    req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no answer within ${Math.round(opts.timeoutMs / 1000)} s`)));
    req.on("error", reject);
    req.end(body || undefined);
  });
}
