/**
 * One-time download lines: the guide's "cURL on the thing", which fetches a thing's distribution
 * zip on the device itself, without putting the operator's access token there. That token is
 * admin over the whole hub; a line copied onto a board (and into its shell history) must not be.
 *
 * A download token is 32 random bytes (base64url) behind a `flxd_` tag. It fetches one thing's
 * zip, once, within DOWNLOAD_TOKEN_LIFETIME_MS, and nothing else. The hub keeps its SHA-256 only,
 * so a copied database or backup holds no usable token. An operator makes one on purpose (`hub
 * thing dist --curl`, the console's button); each is shown once, in the line that uses it.
 */
import { randomBytes } from "node:crypto";
import { InputError } from "../../shared/errors.ts";
import { storeAfterShowing } from "../../shared/foreign-errors.ts";
import type { HubHome } from "../home/home.ts";
import { hashToken } from "../home/tokens.ts";
import type { HubStore, ThingRecord } from "../store/hub-store.ts";
import { distributionDownloadLine } from "./download-line.ts";

const DOWNLOAD_TOKEN_TAG = "flxd_";
/** An hour: enough to reach the board and paste; short enough that a line found later in a history means nothing. */
const DOWNLOAD_TOKEN_LIFETIME_MS = 3_600_000;
/** Expired rows are forgotten this long after they expire (a day: a refused download can still be told from an unknown token in a debug session). */
const FORGET_AFTER_MS = 86_400_000;

/** Whether a bearer value is meant as a download token (by its tag; whether it is valid is the store's to say). */
export function isDownloadToken(token: string | undefined): token is string {
  return token?.startsWith(DOWNLOAD_TOKEN_TAG) === true && token.length <= 100;
}

export interface DownloadLine {
  /** the cURL line, the token in it (shown once: the hub keeps its hash only) */
  line: string;
  /** Unix ms */
  expiresAt: number;
}

export class DownloadTokens {
  constructor(
    private readonly deps: {
      home: HubHome;
      store: HubStore;
      /** the thing's zip, or why it has none (Things.distribution) */
      distribution: (thing: ThingRecord) => { zip: Uint8Array } | { missing: string };
      /** Unix ms */
      now: () => number;
    },
  ) {}

  /**
   * A new one-time cURL line for `thing`'s zip (download-line.ts), with its token, and when it
   * expires (Unix ms). `show` gets them first: when it throws (the line could not be written
   * out), nothing is stored, so no token exists that nobody has seen. Throws InputError (65/400)
   * when the thing has no distribution to hand out (revoked, enrolled, renewed since: the reason
   * is said), and what the store throws.
   */
  async line(thing: ThingRecord, show?: (made: DownloadLine) => void): Promise<DownloadLine> {
    const found = this.deps.distribution(thing);
    if ("missing" in found) throw new InputError(`${thing.name} has no distribution to download: ${found.missing}`);
    const token = DOWNLOAD_TOKEN_TAG + randomBytes(32).toString("base64url");
    const createdAt = this.deps.now();
    const made = { line: distributionDownloadLine(thing, token, this.deps.home), expiresAt: createdAt + DOWNLOAD_TOKEN_LIFETIME_MS };
    show?.(made);
    await storeAfterShowing(
      show !== undefined,
      () => this.deps.store.addDownloadToken({ hash: hashToken(token), thingId: thing.id, createdAt, expiresAt: made.expiresAt }, createdAt - FORGET_AFTER_MS),
      "the line shown above was not stored and does not work: make another when there is room",
    );
    return made;
  }

  /** Whether `token` may fetch the zip of the thing with id `thingId` (a UUID in any case) now; uses nothing up. */
  usable(thingId: string, token: string): Promise<boolean> {
    return this.deps.store.downloadTokenUsable(hashToken(token), thingId.toLowerCase(), this.deps.now());
  }

  /** Uses `token` up for the thing with id `thingId`; false when it was not usable (used, expired, another thing's, unknown). */
  use(thingId: string, token: string): Promise<boolean> {
    return this.deps.store.useDownloadToken(hashToken(token), thingId.toLowerCase(), this.deps.now());
  }
}
