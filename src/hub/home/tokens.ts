import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { storeAfterShowing } from "../../shared/foreign-errors.ts";
import type { HubStore } from "../store/hub-store.ts";

/**
 * Operator access tokens. A token is 32 random bytes (base64url); the hub keeps only its SHA-256,
 * so a copied database or backup does not hand out API access. Hashing also gives every
 * comparison the same length, which `timingSafeEqual` needs.
 */
export function newAccessToken(): string {
  return randomBytes(32).toString("base64url");
}

/** SHA-256 of the token's UTF-8, as 64 lowercase hex characters: what the hub stores in its place. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** True when the token hashes to one of `hashes`. Every candidate is compared, in constant time. */
export function tokenMatchesAny(token: string, hashes: readonly string[]): boolean {
  const presented = Buffer.from(hashToken(token), "hex");
  let match = false;
  for (const hash of hashes) {
    const stored = Buffer.from(hash, "hex");
    if (stored.length === presented.length && timingSafeEqual(stored, presented)) match = true;
  }
  return match;
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | null): string | undefined {
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/** The operator's access to the hub: the tokens whose hashes the hub database keeps. */
export class OperatorTokens {
  constructor(
    private readonly store: HubStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when `token` is a valid operator (or CLI) token now. */
  async verify(token: string | undefined): Promise<boolean> {
    return token !== undefined && tokenMatchesAny(token, await this.store.activeTokenHashes(this.now()));
  }

  /**
   * Replaces the operator token: the old one stops working at once, and every console sign-in
   * and every one-time download line made with it ends, on every hub of the database (a rotation
   * is what an owner does when the token leaked). Returns the new token (shown once).
   * `show` gets it first: when it throws (the token could not be written out), nothing changes,
   * so the old token is never replaced by one nobody has seen. The replacement is one
   * transaction: when it fails (a full disk), nothing changed either, and the error says that
   * the token shown is void.
   */
  async rotate(show?: (token: string) => void): Promise<string> {
    const token = newAccessToken();
    show?.(token);
    await storeAfterShowing(
      show !== undefined,
      () => this.store.replaceOperatorToken(hashToken(token), this.now()),
      "the token shown above was not stored and does not work: nothing changed, the old operator token still works",
    );
    return token;
  }
}
