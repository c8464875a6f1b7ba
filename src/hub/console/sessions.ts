import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * The console's sign-ins. A browser that signs in with the operator access token gets a random
 * session id (its cookie) and a random CSRF token (in every page, sent back with every change).
 * Sessions live in the hub's memory only: a hub restart signs everyone out, and nothing about a
 * session ever reaches the disk or the log. The map is keyed by the id's SHA-256, so a lookup's
 * timing says nothing about the ids it holds.
 *
 * The session keeps the token it was made with, for two reasons: every request checks that the
 * token is still valid (a `hub token rotate` in another process ends the session at its next
 * request), and the thing page shows the guide's cURL line with it.
 */
export interface ConsoleSession {
  /** the operator access token this browser signed in with */
  readonly token: string;
  /** the per-session CSRF token: every state-changing request must carry it */
  readonly csrf: string;
  /** Unix ms */
  readonly createdAt: number;
  /** Unix ms of the last request */
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

export class ConsoleSessions {
  private readonly sessions = new Map<string, ConsoleSession>();
  private readonly idleMs: number;
  private readonly maxAgeMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(limits: SessionLimits = {}) {
    this.idleMs = limits.idleMs ?? 12 * 3_600_000;
    this.maxAgeMs = limits.maxAgeMs ?? 7 * 86_400_000;
    this.max = limits.max ?? 1000;
    this.now = limits.now ?? Date.now;
  }

  /** Starts a session for `token` (already verified by the caller). Returns its id, for the cookie, and the session. */
  create(token: string): { id: string; session: ConsoleSession } {
    const at = this.now();
    const id = randomBytes(32).toString("base64url");
    const session: ConsoleSession = { token, csrf: randomBytes(32).toString("base64url"), createdAt: at, lastUsedAt: at };
    while (this.sessions.size >= this.max) this.sessions.delete(this.leastRecentlyUsed()!);
    this.sessions.set(hashId(id), session);
    return { id, session };
  }

  /** The live session with this id (its last use set to now), or undefined; an expired one is ended. */
  get(id: string | undefined): ConsoleSession | undefined {
    if (!id) return undefined;
    const key = hashId(id);
    const session = this.sessions.get(key);
    if (!session) return undefined;
    const at = this.now();
    if (at - session.lastUsedAt > this.idleMs || at - session.createdAt > this.maxAgeMs) {
      this.sessions.delete(key);
      return undefined;
    }
    session.lastUsedAt = at;
    return session;
  }

  /** Ends the session with this id (sign out); nothing happens for an unknown id. */
  end(id: string | undefined): void {
    if (id) this.sessions.delete(hashId(id));
  }

  /** Ends every session (the token was rotated: none of them holds a valid token any more). */
  endAll(): void {
    this.sessions.clear();
  }

  get size(): number {
    return this.sessions.size;
  }

  private leastRecentlyUsed(): string | undefined {
    let oldest: [string, number] | undefined;
    for (const [key, session] of this.sessions) if (!oldest || session.lastUsedAt < oldest[1]) oldest = [key, session.lastUsedAt];
    return oldest?.[0];
  }
}

/** True when `presented` is the session's CSRF token, compared in constant time. */
export function csrfMatches(session: ConsoleSession, presented: string | null | undefined): boolean {
  if (!presented) return false;
  const a = Buffer.from(hashId(presented), "hex");
  const b = Buffer.from(hashId(session.csrf), "hex");
  return timingSafeEqual(a, b);
}
