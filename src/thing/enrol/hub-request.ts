/**
 * JSON requests from a device that is not a thing yet (enrolment) to its hub, with the TLS trust
 * enrolment needs and collect's client (egress/http-post.ts) does not offer: trusting exactly one
 * CA (the pinned hub CA, not the public roots), or, for the one request that fetches that CA,
 * nothing at all (its answer is checked against the pinned fingerprint before anything is
 * believed, and it carries no secret). node:http(s), so it runs alike under Bun and Node.
 */

import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { tlsHandshakeCode } from "../../shared/foreign-errors.ts";
import { describeError } from "../../shared/log.ts";

export interface HubAnswer {
  status: number;
  /** the envelope's result, or undefined when the body was not an envelope */
  result: unknown;
  /** the envelope's first message (`{key, value}`), the hub's one-line reason on a refusal */
  message: string;
}

export type HubTrust = { kind: "pinned-ca"; caPem: string } | { kind: "none-yet" };

/** The most of an answer kept, in bytes: an enrolment answer is a few KB. */
const MAX_ANSWER_BYTES = 256 * 1024;

/**
 * Sends `body` (JSON) with `method` to `url` and parses the hub's envelope. Rejects with
 * FlashlexError `unavailable` (69) when the hub cannot be reached or does not answer within
 * `timeoutMs`, and with ConfigError (78) when the TLS handshake fails (a certificate not from the
 * pinned CA or not naming the host in `url`, or no TLS spoken there): a retry cannot mend those.
 * Aborted by `signal`, the request is dropped and the signal's reason thrown.
 */
export async function hubRequest(
  url: string,
  opts: { method: "GET" | "POST"; body?: unknown; trust: HubTrust; timeoutMs: number; signal?: AbortSignal },
): Promise<HubAnswer> {
  opts.signal?.throwIfAborted();
  const target = new URL(url);
  const isHttps = target.protocol === "https:";
  const { request } = isHttps ? await import("node:https") : await import("node:http");
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const tls = isHttps
    ? opts.trust.kind === "pinned-ca"
      ? { ca: opts.trust.caPem, rejectUnauthorized: true }
      : // Only the fetch of the CA itself: its answer is judged by the pinned fingerprint, and it sends nothing secret.
        { rejectUnauthorized: false }
    : {};
  const text = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      target,
      {
        method: opts.method,
        headers: payload ? { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(payload)) } : {},
        ...tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          if (size < MAX_ANSWER_BYTES) chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
          size += chunk.length;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no answer within ${Math.round(opts.timeoutMs / 1000)} s`)));
    // stopped (Ctrl-C): the request goes, and the abort's reason is what this throws
    const abort = () => req.destroy(opts.signal?.reason);
    opts.signal?.addEventListener("abort", abort, { once: true });
    req.on("close", () => opts.signal?.removeEventListener("abort", abort));
    req.on("error", reject);
    req.end(payload);
  }).catch((err: unknown) => {
    if (opts.signal?.aborted) throw opts.signal.reason;
    // A handshake that failed fails again on every retry: the URL or the hub's setup is wrong (78).
    const tls = tlsHandshakeCode(err);
    if (tls) throw new ConfigError(`the hub at ${target.host}: ${tlsAdvice(tls)} (${describeError(err)})`);
    // A TLS listener hangs up on a plain HTTP request: the likelier cause than the network here
    const scheme =
      target.protocol === "http:" && (err as NodeJS.ErrnoException)?.code === "ECONNRESET"
        ? "; if the hub serves HTTPS at that address (api.tls), give --hub with https://, as `hub enroll-token create` prints it"
        : "";
    // in the owner's words, as collect says it (egress/http-post.ts), not node:http's "connect ECONNREFUSED host:port"
    const refused = (err as NodeJS.ErrnoException)?.code === "ECONNREFUSED";
    const why = refused ? "connection refused: nothing accepts connections at that address and port (ECONNREFUSED)" : describeError(err);
    throw new FlashlexError(`the hub at ${target.host} cannot be reached: ${why}${scheme}`, "unavailable", { cause: err });
  });
  let envelope: { result?: unknown; messages?: { value?: unknown }[] } | undefined;
  try {
    envelope = JSON.parse(text.body);
  } catch {
    envelope = undefined;
  }
  const message = typeof envelope?.messages?.[0]?.value === "string" ? envelope.messages[0].value : `HTTP ${text.status}`;
  return { status: text.status, result: envelope?.result, message };
}

/** What to check for a failed handshake's code, in the words of the enroll command's flags. */
function tlsAdvice(code: string): string {
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") {
    return "its certificate does not name the host in --hub; give the hub's URL as `hub enroll-token create` prints it, or have the hub's operator add the name to hub.yml broker.names and restart hub serve (it issues the certificate again for them)";
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG") {
    return "it does not speak TLS at that address; check the scheme in --hub (http:// or https://, as the hub's api.publicUrl says)";
  }
  return "its TLS certificate was refused (not from the hub's CA, or not valid now); check --hub";
}
