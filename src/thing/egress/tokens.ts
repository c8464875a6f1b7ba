import type { KeyObject } from "node:crypto";
import type { ThingIdentity } from "../identity.ts";
import type { HubClock } from "./hub-clock.ts";
import type { TokenFile } from "./token-file.ts";

/**
 * How long a signed token is used again, in seconds of its 720-second window (src/crypto/jwt.ts:
 * nbf = t − 360, exp = t + 360): it still has four minutes to run when it is last sent, more
 * than the hub's one minute of skew and any request's time on the way.
 */
export const TOKEN_REUSE_SECONDS = 120;

/** A token to send, and what comes with it. */
export interface SignedToken {
  token: string;
  /** what the hub clock added to the local time when it was signed (ms) */
  offsetMs: number;
  /** the root CA of the identity it was signed with (ThingIdentity.caPem): what an https hub is checked against */
  caPem: string;
  /** signed for an earlier request: the hub may refuse it where a new one would pass (deliverHttp signs again once) */
  reused: boolean;
}

/** The identity to sign with, or what loads it (only when a token must be signed). */
export type IdentitySource = ThingIdentity | (() => Promise<ThingIdentity>);

/**
 * The thing's egress token, signed once and sent again for `TOKEN_REUSE_SECONDS`: signing is a
 * private-key operation (RSA-2048 takes milliseconds on a Raspberry Pi) that every message paid
 * for, and the hub checks a token it verified before without verifying it again
 * (src/hub/messages/collect.ts). Reusing a token within its window is what bearer tokens are
 * for (RFC 6750): it grants nothing a fresh one would not.
 *
 * A new token is signed when the last one is older than that (counted on the hub clock's time,
 * so a clock correction that moves it out of the window counts), when the clock's correction
 * changed, when the identity's key changed (a renewal), and after `forget` (the hub refused it).
 * serve keeps one for its lifetime; a delivery with serve stopped (a `collect`, the SDK) keeps it
 * in the data directory for the next process (`file`, token-file.ts).
 */
export class ThingTokens {
  private last: (Omit<SignedToken, "reused"> & { signedAt: number; key: KeyObject | undefined; fromFile: boolean }) | undefined;

  /** `file`: where a one-shot delivery keeps its token for the next process (token-file.ts); serve keeps it in memory only. */
  constructor(
    private readonly clock?: HubClock,
    private readonly file?: TokenFile,
  ) {}

  /**
   * A token for `identity`, reused or newly signed. A loader is called only to sign; a kept token
   * is reused for a loader whatever it would load (the token file checks the identity's files).
   * Throws what loading the identity or signing throws (ConfigError, CryptoError: an unusable key).
   */
  async current(identity: IdentitySource): Promise<SignedToken> {
    const kept = this.kept();
    const loaded = typeof identity === "function" ? undefined : identity;
    if (kept && (!loaded || kept.key === loaded.privateKey)) return { token: kept.token, offsetMs: kept.offsetMs, caPem: kept.caPem, reused: true };
    // the files as they were before the identity check: files replaced while it ran are not vouched for
    const fingerprint = this.fingerprint();
    const signer = loaded ?? (await (identity as () => Promise<ThingIdentity>)());
    const now = this.nowSeconds();
    const offsetMs = this.clock?.offsetMs ?? 0;
    // jose and node:crypto only to sign: a kept token is sent without them (~2 ms of a collect)
    const { signThingToken } = await import("../../crypto/jwt.ts");
    const token = await signThingToken({ thingId: signer.thingId, privateKey: signer.privateKey, now });
    this.last = { token, offsetMs, caPem: signer.caPem, signedAt: now, key: signer.privateKey, fromFile: false };
    if (fingerprint !== undefined) this.file?.write({ token, offsetMs, caPem: signer.caPem }, Date.now(), fingerprint);
    return { token, offsetMs, caPem: signer.caPem, reused: false };
  }

  /** True when `current` would send a kept token now, signing nothing and loading no identity. */
  hasKept(): boolean {
    return this.kept() !== undefined;
  }

  /** The hub refused the last token: the next `current` signs a new one. */
  forget(): void {
    this.last = undefined;
    this.file?.remove();
  }

  /** This process's last token while it may be sent again (on the hub clock's time), else the token file's. */
  private kept(): ThingTokens["last"] {
    const now = this.nowSeconds();
    const offsetMs = this.clock?.offsetMs ?? 0;
    const last = this.last;
    // a token from the file carries the correction its signer found, which this process's clock has not measured yet
    if (last && (last.fromFile || last.offsetMs === offsetMs) && now >= last.signedAt && now - last.signedAt < TOKEN_REUSE_SECONDS) return last;
    if (last || !this.file) return undefined;
    const saved = this.file.read();
    if (!saved) return undefined;
    const { signedAtMs, ...token } = saved;
    // its age counted on this clock, so that a long-lived process (an SDK app) stops reusing it in time
    this.last = { ...token, signedAt: now - Math.ceil((Date.now() - signedAtMs) / 1000), key: undefined, fromFile: true };
    return this.last;
  }

  /** The token file's view of the identity files now; undefined without a file or when they cannot be looked at (nothing is kept then). */
  private fingerprint(): string | undefined {
    try {
      return this.file?.fingerprint();
    } catch {
      return undefined;
    }
  }

  private nowSeconds(): number {
    return this.clock?.nowSeconds() ?? Math.floor(Date.now() / 1000);
  }
}
