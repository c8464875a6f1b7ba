/**
 * `serve`'s certificate renewal. The agent asks the hub at intervals the hub sets (hub.yml
 * `certificates.renewalCheck`, 15 minutes by default) whether to renew now (`hub thing rotate`),
 * and renews on its own once two thirds of its certificate's lifetime have passed. A renewal:
 * a new key made here (the kind the thing has), a CSR (RFC 2986), `POST .../certificate`
 * authenticated by a JWT signed with the current key (the thing's live authenticated channel,
 * the one collect uses; see docs/enrolment.md for why HTTP and not MQTT), the files swapped as
 * identity-files.ts describes, then the MQTT session reconnects with the new pair. The first
 * connection commits the renewal; if the broker refuses the new pair (a TLS or CONNACK refusal,
 * not a network failure) three times in a row, the agent goes back to the previous pair, but only
 * when the hub says it still takes the previous key (`fallBack`).
 *
 * A failed renewal is retried with exponential backoff and jitter, never later than a tenth of
 * the time the certificate has left, so a short-lived certificate is retried in time.
 */

import { type KeyObject, X509Certificate } from "node:crypto";
import { describeCertificate, issuedByCaIn } from "../../crypto/certificate-info.ts";
import { signThingToken } from "../../crypto/jwt.ts";
import { normalisePrivateKey } from "../../crypto/key-files.ts";
import { generateThingKeyPair, spkiDer, thingKeyTypeOf } from "../../crypto/keys.ts";
import type { Logger } from "../../shared/log.ts";
import { UNAUTHORIZED_FIX } from "../egress/delivery.ts";
import { requestText } from "../egress/http-post.ts";
import { type HubClock, sendWithHubTime } from "../egress/hub-clock.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingSession } from "../mqtt/session.ts";
import type { ThingConfig } from "../settings.ts";
import { commitRenewal, type IdentityPaths, installStaged, previousKeyFile, renewalPending, revertRenewal, stagedKey, stageKey } from "./identity-files.ts";

/** The fraction of a certificate's lifetime after which the agent renews it. */
export const RENEW_AT_FRACTION = 2 / 3;
/** Refusals of the new pair in a row after which the agent goes back to the previous one. */
const REFUSALS_BEFORE_FALLBACK = 3;
const FIRST_CHECK_MIN_MS = 1_000;
const FIRST_CHECK_SPREAD_MS = 9_000;
const RETRY_BASE_MS = 30_000;
const RETRY_MAX_MS = 3_600_000;
const RETRY_EXPIRED_MAX_MS = 300_000;
/** until the hub has said how often to ask */
const DEFAULT_CHECK_MS = 15 * 60_000;

/** When (Unix ms) a certificate valid from `notBefore` to `notAfter` is due for renewal. */
export function renewalDueAt(notBefore: number, notAfter: number): number {
  return notBefore + (notAfter - notBefore) * RENEW_AT_FRACTION;
}

/** `ms` times a random factor in [1 - spread, 1 + spread]: things that started together do not ask together. */
export function jittered(ms: number, spread = 0.2): number {
  return Math.max(0, Math.round(ms * (1 - spread + Math.random() * 2 * spread)));
}

/**
 * The wait before retry number `attempt` (1, 2, ...): 30 s doubling to an hour; while the
 * certificate is valid, at most a tenth of the `remainingMs` it has left (at least a second), so
 * a short lifetime is retried in time. Once it has expired (`attempt` then counts the retries
 * since it did), 30 s doubling to five minutes: the thing is shut out of the broker until it
 * renews, so it asks often enough to be back soon after the hub is, and no more (a thing that
 * cannot renew, revoked or its hub gone, asks every five minutes).
 */
export function retryDelay(attempt: number, remainingMs: number): number {
  const expired = remainingMs <= 0;
  const backoff = Math.min(RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1), expired ? RETRY_EXPIRED_MAX_MS : RETRY_MAX_MS);
  const cap = expired ? Number.POSITIVE_INFINITY : Math.max(1000, remainingMs / 10);
  return jittered(Math.min(backoff, cap));
}

/** Errors that say the broker could not be reached at all: they say nothing about the identity. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ENETDOWN"]);

/** True for an error that says the broker was not reached (refused TCP, no route, no DNS), as opposed to reached and refusing us. */
export function isNetworkFailure(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return (typeof code === "string" && NETWORK_CODES.has(code)) || (typeof code === "number" && code === 3); // CONNACK 3: server unavailable
}

/** The fields of the certificate route's answers the agent reads (GET: advice; POST: the certificate). */
interface HubResult {
  renewNow?: unknown;
  checkAfterSeconds?: unknown;
  certificate?: unknown;
}

export interface RenewerDeps {
  config: ThingConfig;
  /** the agent's identity: replaced in place after a renewal, so every part signs and connects with the new pair */
  identity: ThingIdentity;
  session: ThingSession;
  log: Logger;
  /** what `loadIdentity` makes of the files (the agent's own loader) */
  reload(): ThingIdentity;
  /** serve's hub clock: tokens carry the hub's time once the device clock was found wrong */
  clock?: HubClock;
}

/**
 * One serve's renewal loop (the module comment above): `start` once, `stop` at shutdown. Nothing
 * it runs throws out of it: a failed check or renewal is logged and tried again later.
 */
export class CertificateRenewer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  private checkMs = DEFAULT_CHECK_MS;
  private failures = 0;
  /** failed renewals since the certificate expired (retryDelay starts its backoff again there) */
  private failuresSinceExpiry = 0;
  private refusals = 0;
  /** a fallback is being decided (the hub is asked): closes meanwhile do not count */
  private deciding = false;
  /** the connection being made failed for the network (since the last close) */
  private unreachable = false;
  private readonly paths: IdentityPaths;

  constructor(private readonly deps: RenewerDeps) {
    const { paths } = deps.config;
    this.paths = { privateKey: paths.privateKey, cert: paths.cert, publicKey: paths.publicKey };
  }

  /** Starts checking (the first check within 10 s) and, when a renewal waits for its first connection, watching for it. */
  start(): void {
    this.deps.session.client.on("error", (err) => {
      if (isNetworkFailure(err)) this.unreachable = true;
    });
    this.deps.session.on("connected", () => this.onConnected());
    this.deps.session.on("disconnected", () => this.onDisconnected());
    if (renewalPending(this.paths))
      this.deps.log.info("renewal.pending", { note: "a renewed certificate waits for its first connection; the previous one is kept until then" });
    this.schedule(FIRST_CHECK_MIN_MS + Math.random() * FIRST_CHECK_SPREAD_MS);
  }

  /** Stops checking; a renewal in flight finishes (its files are consistent at every step) before this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // A request the hub does not answer would hold serve's stop for its whole timeout (minutes):
    // it is cut off. Whatever step a renewal was at, its files are consistent (identity-files.ts),
    // and the next start finishes or undoes it, as after a power cut.
    this.stopping.abort(new Error("serve is stopping"));
    await this.running;
  }

  /** the time certificates are judged by: serve's clock, corrected once an answer showed the device's wrong */
  private now(): number {
    return this.deps.clock?.nowMs() ?? Date.now();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.check().finally(() => (this.running = undefined));
    }, ms);
    this.timer.unref?.();
  }

  private apiUrl(): string {
    const { endpoint, env } = this.deps.config.yaml.app.api;
    return `${endpoint.replace(/\/+$/, "")}/${env}/v1/things/${this.deps.identity.thingId}/certificate`;
  }

  private async request(
    method: "GET" | "POST",
    body?: unknown,
    privateKey: KeyObject = this.deps.identity.privateKey,
  ): Promise<{ status: number; result: HubResult | undefined; message: string }> {
    const { identity, clock } = this.deps;
    const answer = await sendWithHubTime(clock, async () => {
      const token = await signThingToken({ thingId: identity.thingId, privateKey, now: clock?.nowSeconds() });
      return requestText(this.apiUrl(), {
        method,
        headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        extraCaPem: identity.caPem,
        timeoutMs: this.deps.config.timeouts.operationMs * 3,
        signal: this.stopping.signal,
      });
    });
    let parsed: { result?: HubResult; messages?: { value?: string }[] } = {};
    try {
      parsed = JSON.parse(answer.body);
    } catch {
      // not an envelope: the status says enough
    }
    return { status: answer.status, result: parsed.result, message: parsed.messages?.[0]?.value ?? (answer.statusText || "no message") };
  }

  /** One check: ask the hub, renew when due, schedule the next. Never throws: a check that fails is logged and tried again. */
  private async check(): Promise<void> {
    try {
      await this.checkOnce();
    } catch (err) {
      this.deps.log.error("renewal.check_crashed", { error: err, note: "checked again later" });
      this.schedule(jittered(this.checkMs));
    }
  }

  private async checkOnce(): Promise<void> {
    const { log } = this.deps;
    const cert = describeCertificate(this.deps.identity.certPem);
    const notAfter = cert.notAfter.getTime();
    const dueAt = renewalDueAt(cert.notBefore.getTime(), notAfter);
    if (renewalPending(this.paths)) {
      this.schedule(jittered(this.checkMs)); // the renewal made waits for its first connection
      return;
    }
    let renewNow = false;
    let refused = false;
    try {
      const advice = await this.request("GET");
      refused = advice.status === 401;
      if (advice.status !== 200) throw new Error(`the hub answered ${advice.status}: ${advice.message}`);
      renewNow = advice.result?.renewNow === true;
      const checkAfter = advice.result?.checkAfterSeconds;
      if (typeof checkAfter === "number" && Number.isFinite(checkAfter)) this.checkMs = Math.max(1000, checkAfter * 1000);
    } catch (err) {
      log.warn("renewal.check_failed", {
        error: err,
        note: this.now() >= dueAt ? "renewing anyway: the certificate is due" : "asked again later",
        // the hub refused the thing's token: revoked, a clock far off, or another hub's address
        fix: refused ? UNAUTHORIZED_FIX : undefined,
      });
    }
    if (renewNow || this.now() >= dueAt) {
      try {
        await this.renew(renewNow);
        this.failures = 0;
        this.failuresSinceExpiry = 0;
      } catch (err) {
        this.failures++;
        // Past expiry the backoff starts again: the retries made while the certificate was valid
        // (many, for a short one) must not put the next one an hour away.
        const expired = notAfter <= this.now();
        if (expired) this.failuresSinceExpiry++;
        const delay = retryDelay(expired ? this.failuresSinceExpiry : this.failures, notAfter - this.now());
        log.warn("renewal.failed", { attempt: this.failures, error: err, retryInMs: delay });
        this.schedule(delay);
        return;
      }
    }
    const untilDue = dueAt - this.now();
    this.schedule(jittered(untilDue > 0 ? Math.min(this.checkMs, untilDue) : this.checkMs, 0.1));
  }

  /**
   * A renewal, steps 1 to 5 of identity-files.ts, then the session reconnects with the new pair.
   * One that is due by time sends the key a failed attempt staged, if any (a retry while the hub
   * is away then makes no new key). One the hub asked for (`hub thing rotate`, as after a leak of
   * the keys directory, which holds the staged key too) always makes a new key.
   */
  private async renew(askedByHub: boolean): Promise<void> {
    const { identity, log } = this.deps;
    const why = askedByHub ? "asked by the hub" : "two thirds of its lifetime passed";
    const staged = askedByHub ? undefined : stagedKey(this.paths);
    log.info("renewal.started", { thing: identity.thingName, why, key: staged ? "the one staged by the last attempt" : "new" });
    const privateKeyPem = staged ?? (await generateThingKeyPair(thingKeyTypeOf(identity.privateKey))).privateKeyPem;
    if (!staged) stageKey(this.paths, privateKeyPem);
    // Loaded only for a renewal (every few weeks): the X.509 library it builds the CSR with is
    // the largest part of serve's heap otherwise (bench row 5, idle RSS).
    const { createCsr, publicKeyPemOf } = await import("../../crypto/csr.ts");
    const csr = await createCsr({ privateKeyPem, commonName: identity.thingName });
    const answer = await this.request("POST", { csr });
    if (answer.status !== 200) throw new Error(`the hub refused the renewal (${answer.status}): ${answer.message}`);
    const certPem = answer.result?.certificate;
    if (typeof certPem !== "string") throw new Error("the hub's answer holds no certificate");
    // The same checks enrolment makes: our CA, our name, our new key.
    const cert = new X509Certificate(certPem);
    // any CA of the root CA file, as the identity check and the TLS handshake take (it was the first alone)
    if (!issuedByCaIn(certPem, identity.caPem)) throw new Error("the renewed certificate is not signed by a CA of the thing's root CA file");
    if (describeCertificate(certPem).subjectCN !== identity.thingName) throw new Error("the renewed certificate names another thing");
    if (!spkiDer(cert.publicKey).equals(spkiDer(normalisePrivateKey(Buffer.from(privateKeyPem)).key)))
      throw new Error("the renewed certificate is not for the new key");
    installStaged(this.paths, certPem, publicKeyPemOf(privateKeyPem));
    this.switchTo(this.deps.reload(), "renewed");
    log.info("renewal.installed", { thing: identity.thingName, notAfter: describeCertificate(certPem).notAfter.toISOString() });
  }

  /** Every part of the agent uses `fresh` from now on; the session reconnects with it. */
  private switchTo(fresh: ThingIdentity, why: string): void {
    Object.assign(this.deps.identity, fresh);
    // The connection dropped on purpose just below closes too: that close is not a refusal.
    this.refusals = this.deps.session.connected ? -1 : 0;
    this.deps.session.reconnectWith(this.deps.identity, why);
  }

  private onConnected(): void {
    this.refusals = 0;
    if (!renewalPending(this.paths)) return;
    try {
      commitRenewal(this.paths);
      this.deps.log.info("renewal.committed", { thing: this.deps.identity.thingName, note: "the renewed identity connected; the previous one was removed" });
    } catch (err) {
      this.deps.log.warn("renewal.commit_failed", { error: err, note: "tried again at the next connection" });
    }
  }

  /**
   * A connection closed. While a renewal waits for its first connection, a close that no network
   * failure explains (the broker was reached, and ended the TLS handshake or refused the
   * CONNECT: with TLS 1.3 a refused client certificate shows as a plain close) counts as a
   * refusal of the new pair; after REFUSALS_BEFORE_FALLBACK in a row, the previous pair may be
   * put back (`fallBack`).
   */
  private onDisconnected(): void {
    const unreachable = this.unreachable;
    this.unreachable = false;
    if (!renewalPending(this.paths) || unreachable || this.deciding) return;
    this.refusals++;
    if (this.refusals < REFUSALS_BEFORE_FALLBACK) return;
    this.deciding = true;
    void this.fallBack().finally(() => (this.deciding = false));
  }

  /**
   * Goes back to the previous pair only if the hub still accepts its key. The hub forgets the
   * previous key as soon as it sees the new one used once (a token from any part of the agent:
   * collect, the update poll; or a connection to the embedded broker), and from then on it
   * refuses the previous key's tokens and lists its certificate in the CRL: falling back then
   * would lock the thing out for good. So the agent asks first, with a token signed by the
   * previous key (`GET .../certificate`):
   *
   * - 200: the hub still takes it (it never saw the new key: a hub restored from a backup, a
   *   certificate another CA signed): the previous pair is put back, as before;
   * - 401: the hub has moved on to the new key: the new pair is kept and committed (the
   *   `.previous` files removed), and the agent keeps connecting with it; whatever made the
   *   broker close the connections is not the certificate the hub issued;
   * - anything else (the hub unreachable, 5xx): nothing is decided now; the next refusal asks again.
   */
  private async fallBack(): Promise<void> {
    const { log } = this.deps;
    let status: number;
    try {
      const previousKey = normalisePrivateKey(previousKeyFile(this.paths)).key;
      status = (await this.request("GET", undefined, previousKey)).status;
    } catch (err) {
      this.refusals = REFUSALS_BEFORE_FALLBACK - 1;
      log.warn("renewal.fallback_deferred", {
        error: err,
        note: "the hub could not say whether it still takes the previous key; asked again at the next refusal",
      });
      return;
    }
    if (status === 401) {
      this.refusals = 0;
      try {
        commitRenewal(this.paths);
        log.warn("renewal.fallback_refused", {
          thing: this.deps.identity.thingName,
          refusals: REFUSALS_BEFORE_FALLBACK,
          note: "the hub refuses the previous key (it moved on to the renewed one, or the thing was revoked or deleted there); kept the renewed key (committed) and keeps connecting with it",
        });
      } catch (err) {
        log.warn("renewal.commit_failed", { error: err, note: "tried again at the next connection" });
      }
      return;
    }
    if (status !== 200) {
      this.refusals = REFUSALS_BEFORE_FALLBACK - 1;
      log.warn("renewal.fallback_deferred", { status, note: "asked again at the next refusal" });
      return;
    }
    if (!renewalPending(this.paths)) return; // committed meanwhile: it connected
    try {
      revertRenewal(this.paths);
      this.switchTo(this.deps.reload(), "previous identity restored");
      log.warn("renewal.fell_back", {
        thing: this.deps.identity.thingName,
        refusals: REFUSALS_BEFORE_FALLBACK,
        note: "the broker refused the renewed certificate and the hub still takes the previous one; back on it, renewed again later",
      });
    } catch (revertErr) {
      log.error("renewal.fallback_failed", { error: revertErr });
    }
  }
}
