import type { KeyObject } from "node:crypto";
import { TokenError } from "../../crypto/errors.ts";
import { verifyThingToken } from "../../crypto/jwt.ts";
import { loadPublicKey } from "../../crypto/keys.ts";
import { isUuid, newMessageId } from "../../protocol/ids.ts";
import { ConflictError } from "../../shared/errors.ts";
import { GroupCommit } from "../../shared/group-commit.ts";
import type { Logger } from "../../shared/log.ts";
import { isoSeconds } from "../../shared/time.ts";
import { fromStore, type HubStore, type MessageInsert, type MessageRecord, type ThingRecord } from "../store/hub-store.ts";
import type { MessageFeed } from "./feed.ts";

/**
 * Egress, whichever way it arrives: `POST .../collect` with the thing's JWT, or an MQTT envelope
 * on `flashlex/collect` carrying the same JWT. Both paths authenticate with the one function
 * here and store through the one function here, so they cannot drift apart.
 */

/** Refused: unknown thing, revoked thing and bad token look the same from outside on purpose. */
export class CollectAuthError extends Error {
  constructor(readonly reason: string) {
    super(`thing token refused: ${reason}`);
    this.name = "CollectAuthError";
  }
}

/**
 * The `WWW-Authenticate` value for a refused thing (RFC 6750 §3): plain `Bearer` when no token
 * came (§3.1: no error code then), `error="invalid_token"` for every refused token, and a
 * description only when the signature verified but the time claims refused it: the caller
 * proved it holds the key, so "token expired" / "token not yet valid" tells it nothing it could
 * not know, and tells its owner that the device clock is the thing to fix.
 */
export function bearerChallenge(err: CollectAuthError): string {
  if (err.reason === "no token") return "Bearer";
  if (err.reason === "expired") return 'Bearer error="invalid_token", error_description="token expired"';
  if (err.reason === "not yet valid") return 'Bearer error="invalid_token", error_description="token not yet valid"';
  return 'Bearer error="invalid_token"';
}

/** The message id was already used by another thing, or by a message sent to the thing (HTTP 409; over MQTT the message is dropped). */
export class MessageIdConflict extends ConflictError {
  constructor() {
    super("this message id is already used");
    this.name = "MessageIdConflict";
  }
}

export interface CollectResult {
  thing: ThingRecord;
  message: MessageRecord;
  /** false when this id was stored before: a retry, answered exactly as the first time */
  inserted: boolean;
}

export interface CollectorDeps {
  store: HubStore;
  log: Logger;
  /** Unix ms */
  now?: () => number;
  /** hears of each message stored for the first time (the console's live view) */
  feed?: MessageFeed;
  /** told when a token made the hub forget a thing's previous key: its certificate is superseded (the CRL must say so) */
  onSuperseded?: (thingId: string) => void;
}

/** At most this many verified tokens are remembered (a few hundred bytes each); the oldest go first. */
export const MAX_VERIFIED_TOKENS = 10_000;

/** At most this many thing rows are remembered (a few KiB each: the key and certificate PEMs); the least recently used go first. */
export const MAX_REMEMBERED_THINGS = 1_000;

interface VerifiedToken {
  thingId: string;
  /** the key that verified it: a token is taken on trust only while the thing still has that key */
  publicKeyPem: string;
  /** the token's exp, Unix seconds */
  exp: number;
}

/**
 * Both egress paths' one authentication and store (above), made once per process: it remembers
 * verified tokens and parsed keys in memory, and commits concurrent stores together.
 */
export class Collector {
  private readonly keys = new Map<string, { pem: string; key: KeyObject }>();
  /**
   * Tokens that verified with their thing's current key, by their exact text: the agent reuses a
   * token for a while (src/thing/egress/tokens.ts), and checking its signature again for every
   * message was a sixth of the hub's time per collect. The thing is still checked for every
   * request (its row as of this turn: `things`), so a revoked thing or a new key refuses a
   * remembered token at once; it is taken on trust only until its exp (the signature check adds
   * a minute of clock skew; this does not).
   */
  private readonly verified = new Map<string, VerifiedToken>();
  /**
   * Thing rows by id, read under `thingsVersion`, kept while the store's things version stays the
   * same (HubStore.thingsVersion): reading the row again for every request was a fifth of the
   * hub's CPU per collect (bench row 3). The version is read at most once per turn of the event
   * loop, shared by the requests of that turn, so a revoked thing, a new key or a deleted thing is
   * refused from the first request read after the change committed, as when every request read
   * the row. Things not found are not remembered (an insert does not change the version).
   */
  private readonly things = new Map<string, ThingRecord>();
  private thingsVersion: number | undefined;
  private versionRead: Promise<number> | undefined;
  /** the store's localThingsWrites when `versionRead` began */
  private writesAtVersionRead = 0;
  private readonly now: () => number;
  /** egress of concurrent requests and publishes, committed together: one fsync for many */
  private readonly commits: GroupCommit<{ message: MessageRecord; seenAt?: number }, MessageInsert>;

  constructor(private readonly deps: CollectorDeps) {
    this.now = deps.now ?? Date.now;
    this.commits = new GroupCommit({
      commit: (items) => deps.store.insertMessages(items),
      bytesOf: (item) => Buffer.byteLength(item.message.payload),
    });
  }

  /**
   * The thing `thingId` if `token` is a valid token it signed; CollectAuthError otherwise.
   * A failing database rejects with StoreFailure (src/hub/store/hub-store.ts).
   */
  async authenticate(thingId: string, token: string | undefined): Promise<ThingRecord> {
    return (await this.authenticateKey(thingId, token)).thing;
  }

  /**
   * `authenticate`, also saying which of the thing's keys signed the token: its current key, or
   * the previous one, which a renewal keeps (things/certificates.ts) until the thing's first token
   * signed with its new key (the thing may have lost power before storing its new certificate,
   * or fallen back to its old identity). That first token makes the hub forget the previous key,
   * and the previous certificate is from then on revoked as superseded (`onSuperseded`).
   */
  async authenticateKey(thingId: string, token: string | undefined): Promise<{ thing: ThingRecord; publicKeyPem: string }> {
    if (!token) throw new CollectAuthError("no token");
    if (!isUuid(thingId)) throw new CollectAuthError("malformed thing id");
    const thing = await this.lookUpThing(thingId);
    if (!thing) throw new CollectAuthError("unknown thing");
    if (thing.revokedAt !== null) throw new CollectAuthError("revoked thing");
    const now = Math.floor(this.now() / 1000);
    if (this.isVerified(token, thing, now)) return { thing, publicKeyPem: thing.publicKeyPem };
    try {
      const claims = await verifyThingToken(token, { thingId, publicKey: this.publicKey(thing.id, thing.publicKeyPem), now });
      this.rememberVerified(token, { thingId, publicKeyPem: thing.publicKeyPem, exp: claims.exp });
      if (thing.previousPublicKeyPem) {
        if (await fromStore(() => this.deps.store.forgetPreviousKey(thing.id, this.now()))) this.deps.onSuperseded?.(thing.id);
        thing.previousPublicKeyPem = null;
      }
      return { thing, publicKeyPem: thing.publicKeyPem };
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      const previous = thing.previousPublicKeyPem;
      if (previous) {
        try {
          await verifyThingToken(token, { thingId, publicKey: this.publicKey(`${thing.id}/previous`, previous), now });
          return { thing, publicKeyPem: previous };
        } catch (previousErr) {
          if (!(previousErr instanceof TokenError)) throw previousErr;
        }
      }
      throw new CollectAuthError(err.reason);
    }
  }

  /**
   * Stores one egress message under `messageId` (a new UUID when the sender gave none) and marks
   * the thing verified and seen. The row is committed before this resolves, so whatever the
   * caller then acknowledges (HTTP 200, MQTT PUBACK) survives a kill -9; messages stored at
   * about the same time share the commit (group commit: at most 1,000 messages or 4 MiB). A
   * failing database rejects with StoreFailure; an id another thing used, or the id of a message
   * sent to the thing (ingress), with MessageIdConflict;
   * a thing deleted since it was authenticated, with CollectAuthError ("unknown thing").
   * `via` is the path it came by (the HTTP collect route, or MQTT's flashlex/collect), told to the feed.
   */
  async store(thing: ThingRecord, messageId: string | undefined, payloadJson: string, via: "http" | "mqtt" = "http"): Promise<CollectResult> {
    const at = this.now();
    const record: MessageRecord = {
      flmessagespk: messageId ?? newMessageId(),
      thingId: thing.id,
      messagetype: "egress",
      payload: payloadJson,
      fltimestamp: Math.floor(at / 1000),
      datecreated: isoSeconds(at),
    };
    const { inserted, message } = await fromStore(() => this.commits.submit({ message: record, seenAt: at }));
    // deleted since it was looked up: answered as any thing that is not there
    if (!message) throw new CollectAuthError("unknown thing");
    // Ids are one namespace for both directions: a collect under the id of an ingress message
    // (an app answering a command with the command's id) would store nothing yet hear "collected".
    if (message.thingId !== thing.id || message.messagetype !== "egress") throw new MessageIdConflict();
    if (inserted) this.deps.feed?.publish({ type: "collected", thingId: thing.id, thingName: thing.name, message, via });
    return { thing, message, inserted };
  }

  /**
   * The thing `id` as the store has it now (a copy the caller may change), from `things` while the
   * things version read in this turn is the one it was read under. Rejects with StoreFailure.
   */
  private async lookUpThing(id: string): Promise<ThingRecord | undefined> {
    const version = await this.currentThingsVersion();
    const remembered = this.things.get(id);
    if (remembered) {
      // least recently used goes first: a hit moves to the end
      this.things.delete(id);
      this.things.set(id, remembered);
      return { ...remembered };
    }
    const thing = await fromStore(() => this.deps.store.getThing(id));
    // Read after `version`, so at least as new; a newer version read meanwhile (another turn)
    // may already have cleared `things` for a change this row predates: then it is not kept.
    if (thing && version === this.thingsVersion) {
      if (this.things.size >= MAX_REMEMBERED_THINGS) this.things.delete(this.things.keys().next().value!);
      this.things.set(id, { ...thing });
    }
    return thing;
  }

  /** The store's things version, read once per turn of the event loop and after each write of this process; `things` is emptied when it changed. */
  private currentThingsVersion(): Promise<number> {
    // A write of this process (a renewal, a revoke, this collector forgetting a previous key) may
    // come within the turn: a version read before it is read again, or a row it changed is kept.
    const writes = this.deps.store.localThingsWrites();
    if (writes !== this.writesAtVersionRead) {
      this.versionRead = undefined;
      this.writesAtVersionRead = writes;
    }
    if (!this.versionRead) {
      const read = fromStore(() => this.deps.store.thingsVersion()).then((version) => {
        if (version !== this.thingsVersion) {
          this.things.clear();
          this.thingsVersion = version;
        }
        return version;
      });
      this.versionRead = read;
      // the next turn reads it again (a failed read too: the next request tries afresh)
      setImmediate(() => {
        if (this.versionRead === read) this.versionRead = undefined;
      });
    }
    return this.versionRead;
  }

  /** True when `token` verified before with `thing`'s current key and has not expired (`now`: Unix seconds). */
  private isVerified(token: string, thing: ThingRecord, now: number): boolean {
    const known = this.verified.get(token);
    if (!known) return false;
    if (now >= known.exp) {
      this.verified.delete(token);
      return false;
    }
    // A thing that still has a previous key goes the long way: its first token signed with the
    // current key is what makes the hub forget the previous one.
    return known.thingId === thing.id && known.publicKeyPem === thing.publicKeyPem && !thing.previousPublicKeyPem;
  }

  private rememberVerified(token: string, entry: VerifiedToken): void {
    if (this.verified.size >= MAX_VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, entry);
  }

  /** Public keys parsed once per thing (and again if the stored PEM ever changes). */
  private publicKey(slot: string, pem: string): KeyObject {
    const cached = this.keys.get(slot);
    if (cached && cached.pem === pem) return cached.key;
    const key = loadPublicKey(pem);
    this.keys.set(slot, { pem, key });
    return key;
  }
}
