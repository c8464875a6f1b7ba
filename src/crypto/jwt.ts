/**
 * Thing tokens: the JWT a thing signs with its own key to authorise HTTPS egress, in the
 * Python SDK's format so old clients keep working (DESIGN.md, "Identity and tokens"). An RSA
 * thing signs RS256 (RFC 7518 §3.3), an EC P-256 thing ES256 and a P-384 thing ES384 (§3.4);
 * the header and claims are otherwise the same.
 *
 * Verification is deliberately narrower than "any valid JWT": exactly the algorithm the thing's
 * registered key implies (`tokenAlgorithmFor`; an RSA thing's ES256 token and an EC thing's
 * RS256 token are both refused), the thing's own key only, exact iss/aud, a bounded lifetime,
 * and canonical base64url. Header checks run before any signature work so that junk is refused
 * cheaply and with a precise reason, and every way a token can fail, including ones jose has no
 * class for, ends as a TokenError: the hub answers 401 for all of them, never 500.
 */
import { type KeyObject, randomUUID } from "node:crypto";
import { decodeProtectedHeader, errors, type JWTPayload, jwtVerify, SignJWT } from "jose";
import { CryptoError, TokenError } from "./errors.ts";
import { tokenAlgorithmFor } from "./keys.ts";

/** How far nbf is before, and exp after, the signing time (the Python SDK's window). */
export const TOKEN_LIFETIME_SECONDS = 360;
/** Tokens are a few hundred bytes; anything this large is not ours and is not worth parsing. */
const MAX_TOKEN_LENGTH = 8192;
const SEGMENT = /^[A-Za-z0-9_-]+$/;

export interface ThingTokenClaims extends JWTPayload {
  iss: string;
  /** Always the single audience string, even if the token carried a one-element array. */
  aud: string;
  exp: number;
}

const issuerFor = (thingId: string) => `urn:thing:${thingId}`;
const audienceFor = (thingId: string) => `urn:flashlex:${thingId}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);

function requireThingId(thingId: string): void {
  if (typeof thingId !== "string" || thingId.length === 0) throw new CryptoError("the thing id must not be empty");
}

/**
 * Signs a token for `thingId`, valid from now-360 s to now+360 s (`now` in Unix seconds), with
 * the algorithm the key implies. Throws CryptoError for a public key or an unsupported key.
 */
export async function signThingToken(opts: { thingId: string; privateKey: KeyObject; now?: number }): Promise<string> {
  requireThingId(opts.thingId);
  if (opts.privateKey.type !== "private") throw new CryptoError("a thing token must be signed with the thing's private key");
  const alg = tokenAlgorithmFor(opts.privateKey);
  const now = opts.now ?? nowSeconds();
  return new SignJWT({})
    .setProtectedHeader({ alg, kid: opts.thingId, typ: "JWT" })
    .setIssuer(issuerFor(opts.thingId))
    .setAudience(audienceFor(opts.thingId))
    .setNotBefore(now - TOKEN_LIFETIME_SECONDS)
    .setExpirationTime(now + TOKEN_LIFETIME_SECONDS)
    .setIssuedAt(now)
    .setJti(randomUUID())
    .sign(opts.privateKey);
}

/**
 * Three base64url segments, each in canonical form. Canonical matters: base64 decoders ignore
 * the spare low bits of the last character, so without this check a token has several
 * spellings that all verify, and "this exact token was changed" would not imply "refused".
 */
function checkShape(token: unknown): asserts token is string {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) throw new TokenError("malformed");
  const parts = token.split(".");
  if (parts.length !== 3) throw new TokenError("malformed");
  // The signature may be empty here so that an `alg: none` token is refused for its algorithm.
  parts.forEach((part, i) => {
    if (i === 2 && part === "") return;
    if (!SEGMENT.test(part) || Buffer.from(part, "base64url").toString("base64url") !== part) throw new TokenError("malformed");
  });
}

function refusalFor(err: unknown): TokenError | undefined {
  if (err instanceof errors.JWSSignatureVerificationFailed) return new TokenError("bad signature");
  if (err instanceof errors.JWTExpired) return new TokenError("expired");
  if (err instanceof errors.JOSEAlgNotAllowed) return new TokenError("algorithm not allowed");
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === "invalid") return new TokenError("malformed");
    if (err.claim === "nbf") return new TokenError("not yet valid");
    if (err.claim === "iss") return new TokenError("wrong issuer");
    if (err.claim === "aud") return new TokenError("wrong audience");
    if (err.claim === "exp") return new TokenError(err.reason === "missing" ? "missing exp" : "expired");
    return new TokenError("malformed");
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return new TokenError("malformed");
  // `crit` naming an extension we do not implement, `b64: false`, an unknown `zip`, ...
  if (err instanceof errors.JOSENotSupported) return new TokenError("unsupported header");
  return undefined;
}

/**
 * Verifies a thing token against that thing's public key (`now` in Unix seconds, skew and
 * lifetime in seconds) and returns its claims. Throws TokenError, with a stable `reason`, for
 * every token it does not accept, whatever the cause; throws a plain CryptoError only when the
 * caller passes something that is not a supported public key (a bug, not a bad token).
 */
export async function verifyThingToken(
  token: string,
  opts: { thingId: string; publicKey: KeyObject; now?: number; clockSkewSeconds?: number; maxLifetimeSeconds?: number },
): Promise<ThingTokenClaims> {
  requireThingId(opts.thingId);
  if (opts.publicKey.type !== "public") throw new CryptoError("thing tokens are verified with the thing's public key");
  const algorithm = tokenAlgorithmFor(opts.publicKey);
  try {
    return await verifyWith(token, algorithm, opts);
  } catch (err) {
    if (err instanceof TokenError) throw err;
    // Whatever else a hostile token provokes (in jose or here) is still a refused token.
    throw refusalFor(err) ?? new TokenError("unverifiable", { cause: err });
  }
}

async function verifyWith(
  token: string,
  algorithm: string,
  opts: { thingId: string; publicKey: KeyObject; now?: number; clockSkewSeconds?: number; maxLifetimeSeconds?: number },
): Promise<ThingTokenClaims> {
  const now = opts.now ?? nowSeconds();
  const skew = opts.clockSkewSeconds ?? 60;
  const maxLifetime = opts.maxLifetimeSeconds ?? 900;

  checkShape(token);
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new TokenError("malformed");
  }
  // Checked here, not only via jose's `algorithms`, so that "none", HS256 (the classic
  // public-key-as-HMAC-secret confusion) and the other key type's algorithm never reach key
  // handling at all.
  if (header.alg !== algorithm) throw new TokenError("algorithm not allowed");
  if (header.kid !== opts.thingId) throw new TokenError("wrong kid");
  if (header.typ !== undefined && (typeof header.typ !== "string" || header.typ.toUpperCase() !== "JWT")) {
    throw new TokenError("wrong typ");
  }
  // Extensions (RFC 7515 §4.1.11 crit, RFC 7797 b64) change how a token is read; a thing never
  // sends them, so a token with either is not one of ours, whatever jose would make of it.
  if ("crit" in header || "b64" in header) throw new TokenError("unsupported header");

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, opts.publicKey, {
      algorithms: [algorithm],
      issuer: issuerFor(opts.thingId),
      audience: audienceFor(opts.thingId),
      clockTolerance: skew,
      currentDate: new Date(now * 1000),
      requiredClaims: ["exp"],
    }));
  } catch (err) {
    const refusal = refusalFor(err);
    if (refusal) throw refusal;
    throw err;
  }

  // jose accepts an audience array that merely contains ours; "exact" means ours alone.
  const aud = Array.isArray(payload.aud) ? (payload.aud.length === 1 ? payload.aud[0] : undefined) : payload.aud;
  if (aud !== audienceFor(opts.thingId)) throw new TokenError("wrong audience");
  const exp = payload.exp;
  if (typeof exp !== "number") throw new TokenError("missing exp");
  // Two bounds: the token's own window (exp - nbf, or exp - iat), and how long it still has
  // from now, which also catches tokens with neither nbf nor iat, or with a future iat.
  const start = payload.nbf ?? payload.iat;
  if ((start !== undefined && exp - start > maxLifetime) || exp - now > maxLifetime) throw new TokenError("lifetime too long");
  // a window that ends before it begins (RFC 7519 §4.1.4-5 cannot both hold): the clock skew let
  // jose take it when both ends were within a minute of now
  if (start !== undefined && start > exp) throw new TokenError("window ends before it begins");

  return { ...payload, iss: issuerFor(opts.thingId), aud, exp };
}
