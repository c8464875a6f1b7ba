/**
 * Enrolment tokens: what lets a device enrol itself (`flashlex enroll`) without the operator's
 * access token. A token is 32 random bytes (base64url) behind a `flxe_` tag, shown once; the hub
 * keeps its SHA-256 only, so a copied database or backup cannot enrol anything. Each has a short
 * public id (for `list` and `revoke`), a number of uses, an expiry and optionally a prefix every
 * typed name enrolled with it must start with (a batch of sensors: `--name-prefix sensor-`).
 *
 * The rules a token is checked by at enrolment live here (`whyRefused`), and the store applies
 * them again inside the enrolment's transaction, so two devices racing for a last use cannot
 * both pass.
 */
import { randomBytes } from "node:crypto";
import { ENROLMENT_TOKEN_TAG } from "../../protocol/enrolment-token.ts";
import { InputError } from "../../shared/errors.ts";
import { storeAfterShowing } from "../../shared/foreign-errors.ts";
import { cutGiven, quoteGiven, quoteLogText } from "../../shared/log.ts";
import { hashToken } from "../home/tokens.ts";
import type { EnrolmentTokenRecord, HubStore } from "../store/hub-store.ts";

/** A day: long enough to enrol a batch in one session, short enough that a token in a chat log soon means nothing. */
export const DEFAULT_TOKEN_LIFETIME_MS = 86_400_000;
/** At most 30 days: a standing token is a standing way in. */
export const MAX_TOKEN_LIFETIME_MS = 30 * 86_400_000;
export const MAX_TOKEN_USES = 100_000;
/** What a typed name is (provision.ts); a prefix is the start of one. */
const NAME_PREFIX = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,38}$/;

export interface NewEnrolmentToken {
  /** the token, shown once */
  token: string;
  record: EnrolmentTokenRecord;
}

export type EnrolmentTokenState = "active" | "used up" | "expired" | "revoked";

/** The state of a token at `now` (Unix ms), revoked first, then used up, then expired. */
export function tokenState(t: EnrolmentTokenRecord, now: number): EnrolmentTokenState {
  if (t.revokedAt !== null) return "revoked";
  if (t.uses >= t.maxUses) return "used up";
  if (t.expiresAt <= now) return "expired";
  return "active";
}

/**
 * Why `record` (looked up by the presented token's hash; undefined when none matched) may not
 * enrol `typedName` at `now`, in words a device may be told; undefined when it may. The words
 * do not help a guesser: tokens are 256-bit random, and the state says nothing of other tokens.
 */
export function whyRefused(record: EnrolmentTokenRecord | undefined, typedName: string, now: number): string | undefined {
  if (!record) return "the enrolment token is not known to this hub";
  const state = tokenState(record, now);
  if (state === "revoked") return "the enrolment token was revoked";
  if (state === "used up") return `the enrolment token was already used (${record.maxUses} of ${record.maxUses} uses)`;
  if (state === "expired") return "the enrolment token has expired";
  if (record.namePrefix !== null && !typedName.startsWith(record.namePrefix))
    return `this enrolment token only enrols names that start with ${record.namePrefix}`;
  return undefined;
}

/** The hash a presented token is looked up by; "" for something that cannot be a token (looks up nothing). */
export function enrolmentTokenHash(token: unknown): string {
  if (typeof token !== "string" || !token.startsWith(ENROLMENT_TOKEN_TAG) || token.length > 100) return "";
  return hashToken(token);
}

/** The operator's side of the tokens above (create, list, revoke), kept in the hub store; times are Unix ms of `now`. */
export class EnrolmentTokens {
  constructor(
    private readonly store: HubStore,
    private readonly now: () => number = Date.now,
    /** the hub's owner prefix: typed names never start with it, so neither may a token's name prefix */
    private readonly ownerPrefix?: string,
  ) {}

  /**
   * Why `namePrefix` cannot be a token's name prefix, as a clause (`must be 1 to 39 letters...`),
   * or undefined when it can: the form, and not the owner prefix, which no name typed at
   * enrolment has (the hub adds it), so a token with it could enrol nothing.
   */
  namePrefixRefusal(namePrefix: string): string | undefined {
    if (!NAME_PREFIX.test(namePrefix)) return "must be 1 to 39 letters, digits, '-' or '_', not starting with '-'";
    if (this.ownerPrefix !== undefined && namePrefix.toLowerCase().startsWith(`${this.ownerPrefix}-`)) {
      return `starts with the owner prefix ${this.ownerPrefix}-, which no name given at enrolment has (the hub adds it): a token with it could enrol nothing`;
    }
    return undefined;
  }

  /**
   * Makes a token: `maxUses` (default 1, at most MAX_TOKEN_USES), `lifetimeMs` (default a day,
   * at most 30 days), `namePrefix` (letters, digits, - and _; not the owner prefix). Returns the
   * token (shown once) and what is stored. `show` gets both first: when it throws (the token
   * could not be written out), nothing is stored, so no token exists that nobody has seen.
   * Throws InputError (65/400) for a value out of range.
   */
  async create(
    opts: { maxUses?: number; lifetimeMs?: number; namePrefix?: string } = {},
    show?: (made: NewEnrolmentToken) => void,
  ): Promise<NewEnrolmentToken> {
    const maxUses = opts.maxUses ?? 1;
    if (!Number.isSafeInteger(maxUses) || maxUses < 1 || maxUses > MAX_TOKEN_USES) throw new InputError(`max uses must be 1 to ${MAX_TOKEN_USES}`);
    const lifetimeMs = opts.lifetimeMs ?? DEFAULT_TOKEN_LIFETIME_MS;
    if (!Number.isSafeInteger(lifetimeMs) || lifetimeMs < 1000 || lifetimeMs > MAX_TOKEN_LIFETIME_MS) {
      throw new InputError("an enrolment token expires after 1s to 30d");
    }
    const namePrefix = opts.namePrefix ?? null;
    const refusal = namePrefix === null ? undefined : this.namePrefixRefusal(namePrefix);
    if (namePrefix !== null && refusal) throw new InputError(`the name prefix ${quoteLogText(cutGiven(namePrefix))} ${refusal}`);
    const token = ENROLMENT_TOKEN_TAG + randomBytes(32).toString("base64url");
    const hash = hashToken(token);
    const createdAt = this.now();
    // The id is part of the hash: public, stable, and it tells nothing about the token.
    const record: EnrolmentTokenRecord = {
      id: hash.slice(0, 12),
      hash,
      namePrefix,
      maxUses,
      uses: 0,
      createdAt,
      expiresAt: createdAt + lifetimeMs,
      revokedAt: null,
    };
    show?.({ token, record });
    await storeAfterShowing(
      show !== undefined,
      () => this.store.addEnrolmentToken(record),
      "the token shown above was not stored and does not work: no enrolment token was made",
    );
    return { token, record };
  }

  /** Every token, oldest first, with its state at this moment. */
  async list(): Promise<(EnrolmentTokenRecord & { state: EnrolmentTokenState })[]> {
    const now = this.now();
    return (await this.store.listEnrolmentTokens()).map((t) => ({ ...t, state: tokenState(t, now) }));
  }

  /**
   * Revokes a token, named by its id or by the token itself (what an owner holds when it leaked):
   * it enrols nothing more. Returns its id and whether it was revoked now (false: it already was).
   * Throws InputError when no token matches; the message never repeats a token given.
   */
  async revoke(idOrToken: string): Promise<{ id: string; changed: boolean }> {
    // ids are lower-case hex, as listed; one typed or pasted in upper case is the same id (as the API takes it)
    let id = idOrToken.toLowerCase();
    if (idOrToken.startsWith(ENROLMENT_TOKEN_TAG)) {
      const record = await this.store.enrolmentTokenByHash(enrolmentTokenHash(idOrToken));
      if (!record) throw new InputError("no enrolment token is the one given (it is not repeated here; see `flashlex hub enroll-token list` for ids)");
      id = record.id;
    } else if (!(await this.store.listEnrolmentTokens()).some((t) => t.id === id)) {
      throw new InputError(`no enrolment token ${quoteGiven(id)} (see \`flashlex hub enroll-token list\`)`);
    }
    return { id, changed: await this.store.revokeEnrolmentToken(id, this.now()) };
  }
}
