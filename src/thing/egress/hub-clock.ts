import type { Logger } from "../../shared/log.ts";
import type { PostResult } from "./http-post.ts";

/**
 * Clock-skew correction for the thing's tokens, as cloud SDKs do it (the AWS SDKs'
 * `correctClockSkew`): every answer of the collect API carries an HTTP `Date` header (RFC 9110
 * §6.6.1, second resolution), which tells how far the device clock is from the hub's. When they
 * differ by more than `SKEW_THRESHOLD_MS`, the thing signs its next tokens with the hub's time
 * (local now + the measured offset) for `iat`, `nbf` and `exp`, so a device whose clock is wrong
 * (no RTC on a Raspberry Pi, NTP not yet synced, a manual `date -s`) still delivers.
 *
 * Why this weakens nothing: the token keeps DESIGN.md's shape (nbf = t − 360 s, exp = t + 360 s,
 * a 12-minute life, under the hub's 15-minute cap). The hub still checks the signature with the
 * thing's own key, and nbf/exp and the lifetime against *its own* clock: a corrected token is
 * exactly the token a thing with a correct clock would have signed, nothing the hub would not
 * accept anyway. Over HTTPS the `Date` comes from the TLS-authenticated hub; over plain HTTP
 * anyone on the path already reads every token and message and can replace the body, so
 * letting that path also pick the token's 12-minute window adds nothing.
 *
 * The offset lives in memory only (serve keeps one for its lifetime and re-measures it on every
 * answer; a one-shot `collect` starts from zero), so a clock that is fixed is trusted again at
 * the next answer. The owner is told once per episode (WARN `clock.skewed`, with the fix) and
 * when it ends (INFO `clock.in_step`).
 */

/** Beyond this difference (either way) the device clock is called wrong and tokens are corrected. */
export const SKEW_THRESHOLD_MS = 30_000;
/** An episode ends only once the clock is this close again, so a clock near the threshold does not flap. */
const IN_STEP_MS = SKEW_THRESHOLD_MS / 2;

export const CLOCK_FIX_HINT = "enable NTP: timedatectl set-ntp true (or set the time by hand)";

/**
 * The correction above, for one process: serve keeps one for its lifetime, a `collect` makes a
 * fresh one (offset 0). Times and ages are in milliseconds, but for `nowSeconds`.
 */
export class HubClock {
  /** what is added to the local clock when signing: 0 unless the clock was found wrong */
  private appliedMs = 0;
  private skewed = false;
  /** local time (ms) of the last measurement, or of the last attempt to measure */
  private measuredAt: number | undefined;

  constructor(
    private readonly log: Logger,
    private readonly localNow: () => number = Date.now,
  ) {}

  /** The time to sign with, in Unix seconds (the hub's time when the local clock was found wrong). */
  nowSeconds(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  /** The local time corrected as `nowSeconds` is, in Unix ms: what decides when a certificate is due. */
  nowMs(): number {
    return this.localNow() + this.appliedMs;
  }

  /** True when nothing was measured (or tried) within the last `maxAgeMs` of local time. */
  isStale(maxAgeMs: number): boolean {
    const now = this.localNow();
    // A local clock that jumped back makes the last measurement "in the future": stale too.
    return this.measuredAt === undefined || now - this.measuredAt > maxAgeMs || now < this.measuredAt;
  }

  /** An attempt to measure is under way: do not start another for `isStale`'s age. */
  attempted(): void {
    this.measuredAt = this.localNow();
  }

  /** Milliseconds currently added to the local clock (0 while the clock is in step). */
  get offsetMs(): number {
    return this.appliedMs;
  }

  /** `observe` for an answer that arrived just now: its `Date`, and its refusal when a 401. */
  observeAnswer(answer: Pick<PostResult, "status" | "headers">): boolean {
    return this.observe(answerDate(answer), this.localNow(), answerRefusal(answer));
  }

  /**
   * Measures the offset from one answer. `date` is the answer's `Date` header (absent or
   * unparsable: nothing changes); `receivedAt` the local time it arrived (Unix ms);
   * `refusal` the `WWW-Authenticate` error description, logged as a hint when it names a time
   * claim. Returns true when this answer changed the correction by more than the threshold
   * (whether a refused token is worth signing again is `sendWithHubTime`'s question: another
   * answer may have changed it first).
   */
  observe(date: string | undefined, receivedAt: number, refusal?: string): boolean {
    const hubMs = date ? Date.parse(date) : NaN;
    if (!Number.isFinite(hubMs)) return false;
    this.measuredAt = receivedAt;
    // The header drops the milliseconds: the hub's time was somewhere in that second, take its middle.
    const measured = hubMs + 500 - receivedAt;
    const before = this.appliedMs;
    if (Math.abs(measured) > SKEW_THRESHOLD_MS || (this.skewed && Math.abs(measured) > IN_STEP_MS)) {
      this.appliedMs = measured;
      if (!this.skewed) {
        this.skewed = true;
        this.log.warn("clock.skewed", {
          offsetSeconds: Math.round(measured / 1000),
          localTime: new Date(receivedAt).toISOString(),
          hubTime: new Date(hubMs).toISOString(),
          refusal,
          note: `the device clock is ${describeOffset(-measured)} the hub's; tokens are signed with the hub's time until it is fixed`,
          fix: CLOCK_FIX_HINT,
        });
      }
    } else {
      this.appliedMs = 0;
      if (this.skewed) {
        this.skewed = false;
        this.log.info("clock.in_step", { offsetSeconds: Math.round(measured / 1000), note: "the device clock agrees with the hub's again" });
      }
    }
    return Math.abs(this.appliedMs - before) > SKEW_THRESHOLD_MS;
  }
}

/** "2 h 5 min ahead of" / "1 d behind": how far the device clock is off, in its two largest units. */
export function describeOffset(deviceMinusHubMs: number): string {
  const direction = deviceMinusHubMs >= 0 ? "ahead of" : "behind";
  const units = [
    ["d", 86_400],
    ["h", 3600],
    ["min", 60],
    ["s", 1],
  ] as const;
  const exact = Math.abs(deviceMinusHubMs) / 1000;
  // Rounded to what is shown, so 23 h 59 min 59.5 s reads "1 d", not "23 h 59 min". The Date
  // header is only good to a second or two, so from 10 minutes on whole minutes are shown.
  const shownFirst = units.findIndex(([, size]) => exact >= size);
  const granularity = exact >= 600 ? Math.max(60, units[shownFirst + 1]?.[1] ?? 1) : shownFirst < 0 ? 1 : (units[shownFirst + 1]?.[1] ?? 1);
  const seconds = Math.round(exact / granularity) * granularity;
  const first = units.findIndex(([, size]) => seconds >= size);
  if (first < 0) return `0 s ${direction}`;
  const [unit, size] = units[first]!;
  const parts = [`${Math.floor(seconds / size)} ${unit}`];
  const next = units[first + 1];
  if (next && Math.floor((seconds % size) / next[1]) > 0) parts.push(`${Math.floor((seconds % size) / next[1])} ${next[0]}`);
  return `${parts.join(" ")} ${direction}`;
}

/**
 * The `error_description` of a `WWW-Authenticate: Bearer error="invalid_token",
 * error_description="..."` challenge (RFC 6750 §3), or undefined.
 */
export function bearerErrorDescription(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /error_description="((?:[^"\\]|\\.)*)"/i.exec(header);
  return match ? match[1]!.replace(/\\(.)/g, "$1").slice(0, 200) : undefined;
}

/** An answer's `Date` header, the first one when it came twice. */
export function answerDate(answer: Pick<PostResult, "headers">): string | undefined {
  const date = answer.headers.date;
  return Array.isArray(date) ? date[0] : date;
}

/** The hub's words for a refused token (a 401's `WWW-Authenticate` error description), else undefined. */
export function answerRefusal(answer: Pick<PostResult, "status" | "headers">): string | undefined {
  if (answer.status !== 401) return undefined;
  const challenge = answer.headers["www-authenticate"];
  return bearerErrorDescription(Array.isArray(challenge) ? challenge[0] : challenge);
}

/**
 * One request of the thing to its hub under `clock` (every route that carries the thing's JWT:
 * collect, updates, renewal): `send` signs its token with `clock.nowSeconds()` before its first
 * `await`; the answer's `Date` is measured, and when the hub refused the token (401) and the
 * clock's correction now differs from the one the token was signed with by more than
 * `SKEW_THRESHOLD_MS`, the request is sent once more, its token signed with the corrected time.
 * The comparison is with the correction at signing, not with what this answer changed: serve's
 * other requests (its update check, a renewal) may have measured the new offset while this one
 * was on its way. So a wrong device clock costs one refused request, whatever the route.
 * Without a clock, `send` once. Returns the last answer; throws what `send` throws.
 */
export async function sendWithHubTime<A extends Pick<PostResult, "status" | "headers">>(clock: HubClock | undefined, send: () => Promise<A>): Promise<A> {
  const signedWithMs = clock?.offsetMs ?? 0;
  let answer = await send();
  if (!clock) return answer;
  clock.observeAnswer(answer);
  if (answer.status === 401 && Math.abs(clock.offsetMs - signedWithMs) > SKEW_THRESHOLD_MS) {
    answer = await send();
    clock.observeAnswer(answer);
  }
  return answer;
}
