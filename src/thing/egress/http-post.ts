import type { IncomingHttpHeaders } from "node:http";

export interface PostResult {
  status: number;
  statusText: string;
  body: string;
  /** the answer's headers, names in lower case (`date`, `www-authenticate`) */
  headers: IncomingHttpHeaders;
}

export interface RequestOptions {
  method?: "POST" | "GET";
  headers?: Record<string, string>;
  body?: string;
  /** a CA to trust next to the public roots (the hub's own, for a hub that serves HTTPS) */
  extraCaPem?: string;
  timeoutMs: number;
  /** ends the request early (serve stopping): it rejects with the signal's reason */
  signal?: AbortSignal;
}

/** The most of an answer's body that is kept, in bytes; the rest is read and dropped. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * Sends a request (POST with a body, or GET) and reads the answer (at most 1 MiB kept). TLS
 * verification is always on; `extraCaPem` is trusted next to the public roots. Rejects on
 * network errors (an error with an errno-like `code`: ECONNREFUSED, ENOTFOUND, EPROTO...) and
 * after `timeoutMs`.
 *
 * Bun's fetch where there is Bun (about 7 ms quicker to a one-shot `collect` than loading
 * node:http, measured in the compiled binary), node:http(s) on Node (the armv7 build), whose
 * fetch cannot take a CA. node:http, node:https and node:tls are loaded only when used.
 */
export function requestText(url: string, opts: RequestOptions): Promise<PostResult> {
  return typeof Bun === "undefined" ? requestWithNodeHttp(url, opts) : requestWithFetch(url, opts);
}

/**
 * Opens, ahead of a request to `url`, the connection that request will take (Bun's
 * `fetch.preconnect`: the name lookup and the TCP connect, on Bun's HTTP thread, while this thread
 * goes on; the request then reuses the socket). For a one-shot `collect` that was 1-3 ms of ~24
 * (farm-bench, interleaved pairs; bench row 2). Plain http only: an https request is made with a
 * CA of its own (`extraCaPem`), which a connection opened without it would not have been checked
 * against. Nothing on Node (the armv7 build), whose node:http has no such call. Never throws: a
 * connection that fails here is the request's to report. A server that closes the connection while
 * it waits (an idle timeout of a few ms, in a proxy) would fail the request that takes it
 * (ECONNRESET, where a connection of its own would have worked): that request is sent once more on
 * a new one (`requestWithFetch`), when the reset came within RESET_RETRY_WINDOW_MS of sending it.
 */
export function preconnect(url: string): void {
  if (typeof Bun === "undefined" || !url.startsWith("http:")) return;
  try {
    fetch.preconnect(url);
    preconnected.add(originOf(url));
  } catch {
    // a URL Bun cannot use: the request says so
  }
}

/**
 * How soon after a request went out on a preconnected socket a reset means the socket was closed
 * as it went (the idle close preconnect risks), in ms: a reset that comes later answers a request
 * the server had and worked on, which is not sent again (attack round 24: one 25 s late was).
 */
const RESET_RETRY_WINDOW_MS = 1_000;

/** The origins `preconnect` opened a connection to that no request has taken yet. */
const preconnected = new Set<string>();

/** The CAs an HTTPS request trusts: the public roots and `extraCaPem`, built once per CA (not per request). */
async function trustedCas(extraCaPem: string | undefined): Promise<string[] | undefined> {
  if (!extraCaPem) return undefined;
  if (trusted?.extraCaPem !== extraCaPem) {
    const { rootCertificates } = await import("node:tls");
    trusted = { extraCaPem, list: [...rootCertificates, extraCaPem] };
  }
  return trusted.list;
}
let trusted: { extraCaPem: string; list: string[] } | undefined;

async function requestWithFetch(url: string, opts: RequestOptions): Promise<PostResult> {
  const isHttps = url.startsWith("https:");
  const onPreconnected = preconnected.delete(originOf(url));
  const sentAt = performance.now();
  let response: Response;
  try {
    response = await fetch(url, {
      method: opts.method ?? "POST",
      headers: opts.headers,
      body: opts.body || undefined,
      signal: opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]) : AbortSignal.timeout(opts.timeoutMs),
      redirect: "manual",
      ...(isHttps ? { tls: { ca: await trustedCas(opts.extraCaPem), rejectUnauthorized: true } } : {}),
    });
    return { status: response.status, statusText: response.statusText, body: await boundedText(response), headers: Object.fromEntries(response.headers) };
  } catch (err) {
    if ((err as Error)?.name === "TimeoutError") throw new Error(`no answer within ${Math.round(opts.timeoutMs / 1000)} s`);
    // The connection preconnect opened was closed under the request (see preconnect): once more
    // on a new one, as HTTP clients do for a reused idle connection. Sent twice it is stored once:
    // a collect carries its message id (protocol/headers.ts).
    const closedAsSent = (err as NodeJS.ErrnoException)?.code === "ECONNRESET" && performance.now() - sentAt < RESET_RETRY_WINDOW_MS;
    if (onPreconnected && closedAsSent && !opts.signal?.aborted) return requestWithFetch(url, opts);
    throw withAddress(err, url);
  }
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

/**
 * Bun's fetch errors do not say where ("ECONNREFUSED: Unable to connect. Is the computer able to
 * access the url?"); node:http's do ("connect ECONNREFUSED 127.0.0.1:8080"). The outbox and
 * `collect` show the reason to the owner, who needs the address: it is put in front, the code kept.
 * Bun's advice to a programmer ("For more information, pass `verbose: true` in the second
 * argument to fetch()") is dropped, and its "Unable to connect. Is the computer able to access
 * the url?" said in the owner's words: the owner cannot follow it.
 */
function withAddress(err: unknown, url: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code !== "string") return err;
  const host = new URL(url).host;
  const reason = String((err as Error).message ?? "")
    .replace(new RegExp(`^${code}: `), "")
    .replace(/\.?\s*For more information, pass `verbose: true`.*$/s, "")
    // node:http's (the armv7 build) OpenSSL text for a plain HTTP port, as Bun's fetch says it
    .replace(/^.*SSL routines.*wrong version number.*$/s, "The TLS handshake failed. Does the server speak TLS on this port?")
    // Bun's words for a programmer ("Is the computer able to access the url?") in the owner's
    .replace(/^Unable to connect\..*$/s, "connection refused: nothing accepts connections at that address and port");
  return Object.assign(new Error(reason.includes(host) ? reason : `${host}: ${reason}`, { cause: err }), { code });
}

/** The body as text, its first MAX_ANSWER_BYTES only: a hostile server cannot fill the memory. */
async function boundedText(response: Response): Promise<string> {
  if (!response.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    if (size + chunk.length > MAX_ANSWER_BYTES) {
      chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
      size = MAX_ANSWER_BYTES;
      break; // leaving the loop cancels the rest of the body
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * node:http's own timeout is for an idle socket: a receiver that trickles its answer, or streams
 * one without end, would hold the request (and serve's delivery behind it) for ever. So the
 * whole request has one deadline, the answer's first MAX_ANSWER_BYTES end it as the fetch path's
 * do, an abort carries its signal's reason, and errors name the address as withAddress does.
 */
async function requestWithNodeHttp(url: string, opts: RequestOptions): Promise<PostResult> {
  const body = opts.body ?? "";
  const target = new URL(url);
  const isHttps = target.protocol === "https:";
  const { request } = isHttps ? await import("node:https") : await import("node:http");
  const ca = isHttps ? await trustedCas(opts.extraCaPem) : undefined;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: unknown, result?: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      opts.signal?.removeEventListener("abort", onAbort);
      if (result) resolve(result);
      else reject(err);
      req.destroy();
    };
    const req = request(
      target,
      {
        method: opts.method ?? "POST",
        headers: { ...opts.headers, ...(body ? { "Content-Length": String(Buffer.byteLength(body)) } : {}) },
        ...(isHttps ? { ca, rejectUnauthorized: true } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const answer = () => ({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? "",
          body: Buffer.concat(chunks).toString("utf8"),
          headers: res.headers,
        });
        res.on("data", (chunk: Buffer) => {
          if (settled) return;
          chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
          size += chunk.length;
          if (size >= MAX_ANSWER_BYTES) finish(undefined, answer()); // the rest is not read
        });
        res.on("end", () => finish(undefined, answer()));
        res.on("error", (err) => finish(withAddress(err, url)));
      },
    );
    // before anything can destroy it: an 'error' with no listener would end the process
    req.on("error", (err) => finish(withAddress(err, url)));
    const deadline = setTimeout(() => finish(new Error(`no answer within ${Math.round(opts.timeoutMs / 1000)} s`)), opts.timeoutMs);
    const onAbort = () => finish(opts.signal!.reason);
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.end(body || undefined);
  });
}
