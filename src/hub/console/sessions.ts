import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { HubStore } from "../store/hub-store.ts";

/**
 * The console's sign-ins. A browser that signs in with the operator access token gets a random
 * session id (its cookie, 32 random bytes) and a CSRF token (in every page, sent back with every
 * change). Sessions live in the hub database (table `console_sessions`), so that every hub of a
 * fleet on one database knows them: a browser signed in on one hub may use any other, and a
 * sign-out or a token rotation on one hub ends sessions everywhere.
 *
 * What the database holds of a session, and why that is enough:
 * - the SHA-256 of its id, never the id: a copied database or backup signs no one in, and a
 *   lookup by hash says nothing by its timing about the ids it holds;
 * - the operator token it was made with, sealed with AES-256-GCM under a key derived (HKDF-SHA256)
 *   from the session id, which only the browser's cookie holds: the database alone cannot
 *   reveal the token. The session keeps the token because every request checks it is still
 *   valid (a `hub token rotate` elsewhere ends the session at its next request); no page shows
 *   it (a thing's cURL line holds a one-time download token of its own);
 * - its times. The CSRF token is not stored at all: it is an HMAC of the session id.
 *
 * Nothing about a session reaches the log.
 */
export interface ConsoleSession {
  /** the operator access token this browser signed in with */
  readonly token: string;
  /** the per-session CSRF token: every state-changing request must carry it */
  readonly csrf: string;
  /** Unix ms */
  readonly createdAt: number;
  /** Unix ms of the last request (as last written: at most a minute behind) */
  lastUsedAt: number;
}

export interface SessionLimits {
  /** a session unused this long ends (ms); default 12 h */
  idleMs?: number;
  /** a session ends this long after sign-in, used or not (ms); default 7 days */
  maxAgeMs?: number;
  /** the most sessions kept; signing in beyond it ends the least recently used; default 1000 */
  max?: number;
  /** Unix ms */
  now?: () => number;
}

const hashId = (id: string) => createHash("sha256").update(id, "utf8").digest("hex");

/** The sealing key of a session's token: HKDF-SHA256 of the session id (RFC 5869), 32 bytes. */
const sealingKey = (id: string) => Buffer.from(hkdfSync("sha256", Buffer.from(id, "utf8"), Buffer.alloc(0), "flashlex console session token", 32));

/** The CSRF token of a session: HMAC-SHA256 of its id, so nothing about it is stored. */
const csrfOf = (id: string) => createHmac("sha256", id).update("flashlex console csrf").digest("base64url");

const BOX_VERSION = "v1";

/** `v1.<base64url of 12-byte IV | ciphertext | 16-byte GCM tag>`: `token` sealed with AES-256-GCM under the session's key. */
export function sealToken(id: string, token: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", sealingKey(id), iv);
  const body = Buffer.concat([cipher.update(token, "utf8"), cipher.final()]);
  return `${BOX_VERSION}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url")}`;
}

/** The token sealed in `box` for session `id`; undefined when it does not open (another id, tampered, unknown form). */
export function openToken(id: string, box: string): string | undefined {
  const [version, data] = box.split(".");
  if (version !== BOX_VERSION || !data) return undefined;
  const bytes = Buffer.from(data, "base64url");
  if (bytes.length < 12 + 16) return undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", sealingKey(id), bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString("utf8");
  } catch {
    return undefined;
  }
}

/**
 * The sign-ins above, as the console uses them. It holds nothing but its limits (ms): the
 * sessions are in the hub database, and each method rejects when the database does.
 */
export class ConsoleSessions {
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly max: number;
  private readonly now: () => number;
  /** a use is written back only when the stored one is older than this (ms): not one write per request */
  private readonly touchEveryMs: number;

  constructor(
    private readonly store: HubStore,
    limits: SessionLimits = {},
  ) {
    this.idleMs = limits.idleMs ?? 12 * 3_600_000;
    this.maxAgeMs = limits.maxAgeMs ?? 7 * 86_400_000;
    this.max = limits.max ?? 1000;
    this.now = limits.now ?? Date.now;
    this.touchEveryMs = Math.min(60_000, this.idleMs / 10);
  }

  /** Starts a session for `token` (already verified by the caller). Returns its id, for the cookie, and the session. Rejects when the database does. */
  async create(token: string): Promise<{ id: string; session: ConsoleSession }> {
    const at = this.now();
    const id = randomBytes(32).toString("base64url");
    await this.store.addConsoleSession(
      { idHash: hashId(id), tokenBox: sealToken(id, token), createdAt: at, lastUsedAt: at },
      { usedSince: at - this.idleMs, createdSince: at - this.maxAgeMs, max: this.max },
    );
    return { id, session: { token, csrf: csrfOf(id), createdAt: at, lastUsedAt: at } };
  }

  /**
   * The live session with this id, or undefined; an expired one is ended. Its last use is set to
   * now unless `touch` is false: a live view's look at its session is not a use, or a page left
   * open on an unattended screen would keep the sign-in past its idle time.
   */
  async get(id: string | undefined, options: { touch?: boolean } = {}): Promise<ConsoleSession | undefined> {
    if (!id) return undefined;
    const key = hashId(id);
    const row = await this.store.consoleSession(key);
    if (!row) return undefined;
    const at = this.now();
    const token = openToken(id, row.tokenBox);
    if (token === undefined || at - row.lastUsedAt > this.idleMs || at - row.createdAt > this.maxAgeMs) {
      await this.store.deleteConsoleSession(key);
      return undefined;
    }
    if (options.touch === false) return { token, csrf: csrfOf(id), createdAt: row.createdAt, lastUsedAt: row.lastUsedAt };
    if (at - row.lastUsedAt >= this.touchEveryMs) {
      try {
        await this.store.touchConsoleSession(key, at);
      } catch (err) {
        // A full or read-only disk: the page is still shown (only the idle clock is not moved
        // on), as reading needs no write (attack round 27, F6c: every page was a 503).
        if (!["full", "read-only"].includes(toFlashlexError(err).kind)) throw err;
        return { token, csrf: csrfOf(id), createdAt: row.createdAt, lastUsedAt: row.lastUsedAt };
      }
    }
    return { token, csrf: csrfOf(id), createdAt: row.createdAt, lastUsedAt: at };
  }

  /** Ends the session with this id (sign out); nothing happens for an unknown id. */
  async end(id: string | undefined): Promise<void> {
    if (id) await this.store.deleteConsoleSession(hashId(id));
  }
}

/** True when `presented` is the session's CSRF token, compared in constant time. */
export function csrfMatches(session: ConsoleSession, presented: string | null | undefined): boolean {
  if (!presented) return false;
  const a = Buffer.from(hashId(presented), "hex");
  const b = Buffer.from(hashId(session.csrf), "hex");
  return timingSafeEqual(a, b);
}
