import type { KeyObject } from "node:crypto";
import { signThingToken } from "../../crypto/jwt.ts";
import type { ThingIdentity } from "../identity.ts";
import type { HubClock } from "./hub-clock.ts";

/**
 * How long a signed token is used again, in seconds of its 720-second window (src/crypto/jwt.ts:
 * nbf = t − 360, exp = t + 360): it still has four minutes to run when it is last sent, more
 * than the hub's one minute of skew and any request's time on the way.
 */
export const TOKEN_REUSE_SECONDS = 120;

/** A token and what the hub clock added to the local time when it was signed (ms). */
export interface SignedToken {
  token: string;
  offsetMs: number;
}

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
 * serve keeps one for its lifetime; a one-shot delivery makes its own.
 */
export class ThingTokens {
  private last: (SignedToken & { signedAt: number; key: KeyObject }) | undefined;

  constructor(private readonly clock?: HubClock) {}

  /** A token for `identity`, reused or newly signed; throws what signing throws (CryptoError: an unusable key). */
  async current(identity: ThingIdentity): Promise<SignedToken> {
    const now = this.clock?.nowSeconds() ?? Math.floor(Date.now() / 1000);
    const offsetMs = this.clock?.offsetMs ?? 0;
    const last = this.last;
    if (last && last.key === identity.privateKey && last.offsetMs === offsetMs && now >= last.signedAt && now - last.signedAt < TOKEN_REUSE_SECONDS) {
      return { token: last.token, offsetMs };
    }
    const token = await signThingToken({ thingId: identity.thingId, privateKey: identity.privateKey, now });
    this.last = { token, offsetMs, signedAt: now, key: identity.privateKey };
    return { token, offsetMs };
  }

  /** The hub refused the last token: the next `current` signs a new one. */
  forget(): void {
    this.last = undefined;
  }
}
