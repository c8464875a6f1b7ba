import { type ErrorKind, FlashlexError } from "../shared/errors.ts";

/**
 * Errors from src/crypto. Their messages are one line and never contain key material, PEM text
 * or token text: callers log them and print them to users, and a key pasted into a log is a
 * leaked key. A key, certificate or CA that cannot be used is a configuration problem (kind
 * `config`, exit 78); callers that know the file put its name in front (src/thing/identity.ts).
 */
export class CryptoError extends FlashlexError {
  constructor(message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super(message, options?.kind ?? "config", options);
    this.name = "CryptoError";
  }
}

/**
 * Why a thing token was refused: short and stable, meant for logs and tests, not for clients
 * (the hub tells a client only "expired" and "not yet valid", which need a valid signature).
 * `unverifiable` is the catch-all for a failure no other reason names.
 */
export type TokenRefusal =
  | "malformed"
  | "unsupported header"
  | "unverifiable"
  | "algorithm not allowed"
  | "wrong kid"
  | "wrong typ"
  | "bad signature"
  | "expired"
  | "not yet valid"
  | "missing exp"
  | "wrong issuer"
  | "wrong audience"
  | "lifetime too long"
  | "window ends before it begins";

/** A thing token (RFC 7519) refused for `reason`; kind `data` (65), the message names the reason only. */
export class TokenError extends CryptoError {
  constructor(
    readonly reason: TokenRefusal,
    options?: { cause?: unknown },
  ) {
    // A token is what a caller presented: refusing it is about the input, not the hub's keys.
    super(`thing token refused: ${reason}`, { ...options, kind: "data" });
    this.name = "TokenError";
  }
}
