import type { HubStore } from "../store/hub-store.ts";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Operator access tokens. A token is 32 random bytes (base64url); the hub keeps only its SHA-256,
 * so a copied database or backup does not hand out API access. Hashing also gives every
 * comparison the same length, which `timingSafeEqual` needs.
 */
export function newAccessToken(): string {
  return randomBytes(32).toString("base64url");
}

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

/** Replaces the operator token: the old one stops working at once. Returns the new token (shown once). */
export async function rotateOperatorToken(store: HubStore): Promise<string> {
  const token = newAccessToken();
  await store.deleteTokens("operator");
  await store.addToken(hashToken(token), "operator", Date.now(), null);
  return token;
}
