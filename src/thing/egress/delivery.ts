import { buildCollectEnvelope } from "../../protocol/collect-envelope.ts";
import { MESSAGE_ID_HEADER } from "../../protocol/headers.ts";
import { describeError } from "../../shared/log.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingSession } from "../mqtt/session.ts";
import type { ThingConfig } from "../settings.ts";
import type { OutboxEntry } from "../store/message-store.ts";
import { collectUrl } from "./collect-url.ts";
import { type PostResult, requestText } from "./http-post.ts";
import { answerDate, answerRefusal, CLOCK_FIX_HINT, describeOffset, type HubClock, SKEW_THRESHOLD_MS, sendWithHubTime } from "./hub-clock.ts";
import { type IdentitySource, ThingTokens } from "./tokens.ts";

export type DeliveryOutcome =
  | { kind: "sent"; status?: number; body?: string }
  /** the receiver refused the message itself; retrying cannot help */
  | { kind: "rejected"; status: number; body: string; error: string }
  /**
   * the receiver could not be reached, failed, or refused the thing (not the message); try again
   * later, not before `retryAfterMs` when the receiver said when (Retry-After). `mayHaveArrived`:
   * no answer came and the request may have been sent (a timeout, a reset, no PUBACK: whether the
   * connection or the TLS handshake had finished is not known), so the receiver may hold it; sent
   * again under its message id, it is stored once
   */
  | { kind: "retry"; error: string; status?: number; retryAfterMs?: number; mayHaveArrived?: true };

/**
 * Error codes of a request that never left: the name did not resolve, nothing listened, no route,
 * or the TLS handshake (before any byte of the request) failed. Anything else that ends a request
 * without an answer (a timeout, a reset, an abort) may come after the receiver read it.
 */
const NEVER_SENT = /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EAI_NONAME|EHOSTUNREACH|ENETUNREACH|EPROTO|ERR_SSL_|CERT_|ERR_TLS_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/;

/** A retry for a request that ended with `err` and no answer (mayHaveArrived unless it never left). */
function unanswered(err: unknown, error = describeError(err)): DeliveryOutcome {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === "string" && NEVER_SENT.test(code) ? { kind: "retry", error } : { kind: "retry", error, mayHaveArrived: true };
}

/** The longest Retry-After honoured: a receiver cannot park the outbox for days. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * The answers that refuse the *content* of a message for good: sending the same bytes again
 * gets the same answer. 400 (not JSON, too deep, bad message id), 409 (the message id belongs
 * to another message), 413 (too large), 415 (not JSON), 422 (unprocessable). Everything else
 * — 401/403 (the token or the thing: a wrong clock, a revoked or not yet registered thing),
 * 404 (a wrong endpoint), 408, 429, 5xx, 3xx, network errors — is something the owner or time
 * can fix, so the message stays pending and is retried with backoff.
 */
export const PERMANENT_REFUSALS: ReadonlySet<number> = new Set([400, 409, 413, 415, 422]);

/** Classifies one HTTP answer of the collect API (see PERMANENT_REFUSALS); a retry keeps the answer's Retry-After. */
export function outcomeOf(
  response: Pick<PostResult, "status" | "statusText" | "body"> & { headers?: PostResult["headers"] },
  detail?: string,
): DeliveryOutcome {
  const { status, body } = response;
  if (status >= 200 && status < 300) return { kind: "sent", status, body };
  // the hub's own reason, kept for `outbox list` days later (new-user pass 23, F11: only "413 Payload Too Large")
  const why = detail ?? envelopeReason(body);
  const error = `the API answered ${status} ${response.statusText}`.trim() + (why ? ` (${why})` : "");
  if (PERMANENT_REFUSALS.has(status)) return { kind: "rejected", status, body, error };
  const retryAfterMs = retryAfterOf(response.headers?.["retry-after"]);
  return retryAfterMs === undefined ? { kind: "retry", status, error } : { kind: "retry", status, error, retryAfterMs };
}

/** The reason in the hub's JSON envelope (`messages[0].value`), at most 200 characters; undefined for any other body. */
function envelopeReason(body: string | undefined): string | undefined {
  if (!body?.startsWith("{")) return undefined;
  try {
    const value = (JSON.parse(body) as { messages?: { value?: unknown }[] })?.messages?.[0]?.value;
    return typeof value === "string" && value ? (value.length > 200 ? `${value.slice(0, 200)}…` : value) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A Retry-After header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as ms from now, at most
 * MAX_RETRY_AFTER_MS; undefined when absent or unreadable.
 */
export function retryAfterOf(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  // an HTTP-date starts with the day's name (IMF-fixdate, and the obsolete RFC 850 and asctime forms)
  const ms = /^\d{1,10}$/.test(value) ? Number(value) * 1000 : /^[A-Za-z]{3}/.test(value) ? Date.parse(value) - now : Number.NaN;
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS) : undefined;
}

/**
 * POSTs one outbox entry to the collect API with the thing's JWT (`tokens`: serve's, or a one-shot
 * delivery's with its token file, reused while young; else one signed for this delivery; the
 * identity is loaded only to sign). With a `clock`, the token is signed with the hub's time once
 * the answers showed the device clock is wrong (hub-clock.ts), and a 401 whose `Date` reveals a
 * new skew is retried once at once with the corrected time — so a one-shot `collect` on a device
 * with a wrong clock still delivers. A 401 makes `tokens` sign anew, at once when the refused
 * token was a reused one (the hub restored from a backup, the thing made again with the same
 * keys), else next time. Never throws for the network; throws only what loading the identity or
 * signing throws (ConfigError, CryptoError).
 */
export async function deliverHttp(
  entry: Pick<OutboxEntry, "message_id" | "body">,
  deps: { config: ThingConfig; identity: IdentitySource; timeoutMs?: number; clock?: HubClock; tokens?: ThingTokens },
  signal?: AbortSignal,
): Promise<DeliveryOutcome> {
  const { clock } = deps;
  const tokens = deps.tokens ?? new ThingTokens(clock);
  // what the clock added to the local time when the token of the last request was signed
  let signedWithOffsetMs = 0;
  let sentReused = false;
  // an identity or key that fails to sign: nothing was sent (not "may have arrived")
  let unsigned = false;
  const post = async (): Promise<PostResult> => {
    const signed = await tokens.current(deps.identity).catch((err) => {
      unsigned = true;
      throw err;
    });
    signedWithOffsetMs = signed.offsetMs;
    sentReused = signed.reused;
    const response = await requestText(collectUrl(deps.config), {
      headers: {
        Authorization: `Bearer ${signed.token}`,
        "Content-Type": "application/json",
        [MESSAGE_ID_HEADER]: entry.message_id,
      },
      body: entry.body,
      extraCaPem: signed.caPem,
      timeoutMs: deps.timeoutMs ?? 30_000,
      signal,
    });
    if (response.status === 401) tokens.forget();
    return response;
  };
  let response: PostResult;
  try {
    response = await sendWithHubTime(clock, post);
    if (response.status === 401 && sentReused) response = await sendWithHubTime(clock, post);
  } catch (err) {
    return unsigned ? { kind: "retry", error: describeError(err) } : unanswered(err);
  }
  return outcomeOf(response, response.status === 401 ? refusalDetail(response, signedWithOffsetMs) : undefined);
}

/**
 * Publishes one outbox entry to the egress topic. The envelope carries the thing's JWT, so the
 * hub authenticates the message the same way as over HTTP even behind a broker that does not
 * tell it who published. With a `clock`, the token carries the hub's time.
 *
 * MQTT has no `Date` of its own, and the hub cannot refuse one PUBLISH (MQTT 3.1.1 has no
 * negative PUBACK): it acknowledges an envelope whose token it refuses and drops it. So a wrong
 * device clock would lose MQTT egress silently. The clock is therefore measured over HTTP
 * before signing when the last measurement is older than `CLOCK_MAX_AGE_MS` (one GET to the
 * collect URL, which every hub answers with a `Date`, 405 included; no token is sent).
 *
 * `signal` (serve stopping, or the first attempt's time running out) stops the wait for the
 * PUBACK, which can take `mqttOperationTimeout` (120 s in the hub's distributions): the outcome
 * is then `retry`, and the row goes again under the same message id, which the hub stores once.
 */
export async function deliverMqtt(
  entry: Pick<OutboxEntry, "message_id" | "body">,
  deps: { config: ThingConfig; identity: ThingIdentity; session: ThingSession; clock?: HubClock; tokens?: ThingTokens },
  signal?: AbortSignal,
): Promise<DeliveryOutcome> {
  if (!deps.session.connected) return { kind: "retry", error: "not connected to the broker" };
  if (deps.clock?.isStale(CLOCK_MAX_AGE_MS)) await measureHubClock(deps.clock, deps, signal);
  const { token } = await (deps.tokens ?? new ThingTokens(deps.clock)).current(deps.identity);
  const envelope = buildCollectEnvelope({ messageId: entry.message_id, thingId: deps.identity.thingId, token, payload: JSON.parse(entry.body) });
  try {
    await unlessAborted(deps.session.publish(deps.config.yaml.thing.mqtt.egress.topic, envelope, 1), signal);
    return { kind: "sent" };
  } catch (err) {
    // the PUBLISH may have reached the broker whatever ended the wait for its PUBACK
    return unanswered(err, signal?.aborted ? `no PUBACK yet (${describeError(signal.reason)})` : describeError(err));
  }
}

/** `work`'s result, or a rejection with `signal`'s reason once it aborts first (`work` goes on unobserved). */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** How old the clock measurement may be when an MQTT token is signed. */
export const CLOCK_MAX_AGE_MS = 10 * 60_000;

/**
 * Reads the hub's time from the `Date` of a GET to the collect URL (no token; the hub answers
 * 405) and tells the clock. A hub that cannot be reached leaves the clock as it was: tokens are
 * then signed with the device's time, as without correction.
 */
export async function measureHubClock(clock: HubClock, deps: { config: ThingConfig; identity: ThingIdentity }, signal?: AbortSignal): Promise<void> {
  clock.attempted();
  try {
    const response = await requestText(collectUrl(deps.config), { method: "GET", extraCaPem: deps.identity.caPem, timeoutMs: 10_000, signal });
    clock.observeAnswer(response);
  } catch {
    // unreachable: nothing learned
  }
}

/**
 * Capped exponential backoff for outbox retries: 2 s, 4 s, … up to 5 minutes, after `attempts`
 * failed tries. A value that is not a count (a row written by another program) counts as 0.
 */
export function retryDelayMs(attempts: unknown): number {
  const n = typeof attempts === "number" && Number.isFinite(attempts) && attempts > 0 ? attempts : 0;
  return Math.min(RETRY_CAP_MS, 2000 * 2 ** Math.min(n, 10));
}

export const RETRY_CAP_MS = 300_000;

/**
 * What a 401 means, for the row's `last_error`, the log and `collect`'s line: the hub's own words
 * when it gave them, then the cause. The clock is named only when this answer's own `Date` shows
 * that the token was signed with a time the hub does not share (the token's time is the device
 * clock plus `signedWithOffsetMs`, what the hub clock had corrected by then): once tokens carry
 * the hub's time, a device clock that is still wrong is not why the hub refused them.
 */
function refusalDetail(response: PostResult, signedWithOffsetMs: number): string {
  const parts: string[] = [];
  const description = answerRefusal(response);
  if (description) parts.push(description);
  const hubMs = Date.parse(answerDate(response) ?? "");
  const tokenMinusHub = Number.isFinite(hubMs) ? Date.now() + signedWithOffsetMs - (hubMs + 500) : undefined;
  if (tokenMinusHub !== undefined && Math.abs(tokenMinusHub) > SKEW_THRESHOLD_MS) {
    parts.push(`the device clock is ${describeOffset(tokenMinusHub)} the hub's; to fix it, ${CLOCK_FIX_HINT}`);
  } else {
    parts.push(unauthorizedMeaning(tokenMinusHub !== undefined));
  }
  return parts.join("; ");
}

/**
 * What a 401 from the collect API means, in one phrase: the hub refused the thing's token. When
 * the answer's `Date` showed the token's time was right (`clockRuledOut`), the clock is not the
 * cause and is not named.
 */
export function unauthorizedMeaning(clockRuledOut: boolean): string {
  // the token names the thing by flashlex.thing.id, which no local check can verify: a typo there is a 401 too
  const causes =
    "the thing may be revoked, or unknown to the hub at flashlex.app.api.endpoint (another hub's address, or a flashlex.thing.id the hub did not give it)";
  return clockRuledOut
    ? `the hub refused the thing's token, not for its time: ${causes}`
    : `the hub refused the thing's token: the device clock may be off, or ${causes}`;
}

/** The fix for a 401 from the collect API: what to check, in the order a 401 is most often caused. */
export const UNAUTHORIZED_FIX =
  "A 401 means the hub refused the thing's token: set the clock if it is off (enable NTP: sudo timedatectl set-ntp true); on the hub, check the thing is not revoked (flashlex hub thing list); check flashlex.app.api.endpoint and env name the hub that made this thing, and flashlex.thing.id is the id it gave it.";
