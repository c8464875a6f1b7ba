/**
 * src/hub/things: the thing use cases, the one place for each rule about things, called by the
 * CLI (src/cli/hub/things.ts), the HTTP API (src/hub/http/routes.ts) and the console (src/hub/console).
 *
 *   things.ts        Things: create, find, list, distribution, revoke, delete
 *   provision.ts     a new thing: name, key pair, certificate, distribution
 *   distribution.ts  the distribution zip, from dist-template/
 *   revocation.ts    the CRL files an external broker reads
 */
import { rmSync } from "node:fs";
import { unzipSync } from "fflate";
import { parse } from "yaml";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { FlashlexError, UsageError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { quoteGiven } from "../../shared/log.ts";
import type { HubHome } from "../home/home.ts";
import { distributionPath } from "../home/paths.ts";
import type { HubStore, MessageCounts, ThingRecord, ThingTarget } from "../store/hub-store.ts";
import { keyFileNames } from "./distribution.ts";
import { type CreatedThing, createThing, findThing, readDistribution } from "./provision.ts";
import { CrlFilesNotWritten, writeRevocationLists } from "./revocation.ts";

export type { ThingRecord };

export type ThingStatus = "created" | "verified" | "revoked";

/** `created` until the thing first proves itself (a connection to the embedded broker, a test message or a collect), then `verified`; `revoked` for good. */
export function thingStatus(thing: Pick<ThingRecord, "revokedAt" | "verifiedAt">): ThingStatus {
  if (thing.revokedAt !== null) return "revoked";
  return thing.verifiedAt !== null ? "verified" : "created";
}

/** What a list of things is narrowed to: `active` is every status but revoked. */
export const THING_FILTER_STATUSES = ["created", "verified", "revoked", "active"] as const;
/** The longest name filter taken: a thing's full name is far shorter (owner prefix, dash, 40). */
export const MAX_FILTER_CHARS = 200;

/** A list's filter: things whose name holds `nameContains` (any case), of `status`. */
export interface ThingFilter {
  nameContains?: string;
  status?: (typeof THING_FILTER_STATUSES)[number];
}

/**
 * The filter as a person gave it (`GET /things?q=&status=`, `hub thing list --name --status`).
 * Throws UsageError (64 / 400) for a status not in THING_FILTER_STATUSES, or a name filter over
 * MAX_FILTER_CHARS or holding a control character (no name has one).
 */
export function parseThingFilter(given: { name?: string; status?: string }): ThingFilter {
  const { name, status } = given;
  if (status !== undefined && !(THING_FILTER_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`status must be one of ${THING_FILTER_STATUSES.join(", ")}, not ${quoteGiven(status.slice(0, 40))}`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what no thing name holds
  if (name !== undefined && /[\x00-\x1f\x7f]/.test(name)) throw new UsageError("the name filter holds a control character; a thing's name has none");
  if (name !== undefined && name.length > MAX_FILTER_CHARS) {
    throw new UsageError(`the name filter is at most ${MAX_FILTER_CHARS} characters; this one has ${name.length}`);
  }
  return { nameContains: name?.trim() || undefined, status: status as ThingFilter["status"] };
}

/** Whether `thing` passes `filter` (the console's name rule: a substring, any case). */
export function matchesThingFilter(thing: ThingRecord, filter: ThingFilter): boolean {
  if (filter.nameContains && !thing.name.toLowerCase().includes(filter.nameContains.toLowerCase())) return false;
  if (filter.status === "active") return thing.revokedAt === null;
  return filter.status === undefined || thingStatus(thing) === filter.status;
}

export interface ThingsDeps {
  home: HubHome;
  store: HubStore;
  /** Unix ms */
  now?: () => number;
  /** a running hub's broker: disconnect this thing now (absent in a command: the service polls) */
  disconnect?: (thingName: string) => void;
  /** a running hub's broker: whether this thing is connected now (undefined: it cannot tell; absent in a command) */
  isConnected?: (thingName: string) => boolean | undefined;
}

/** A thing with what an owner looks at first: is it there now, what did it exchange, until when is it valid. */
export interface ThingSummary {
  thing: ThingRecord;
  status: ThingStatus;
  /** connected to the broker now; null when nobody can tell (an external broker, or no running hub) */
  connected: boolean | null;
  /** messages stored, by type */
  messages: MessageCounts;
  /** the certificate's notAfter in Unix ms; null when it cannot be read */
  certExpiresAt: number | null;
}

export interface ThingOverview {
  /** things matching the filter, in all */
  total: number;
  /** this page, oldest first */
  items: ThingSummary[];
  offset: number;
  limit: number;
}

/** The largest page `overview` gives, so that one request stays cheap with thousands of things. */
export const MAX_THINGS_PAGE = 200;

/** The certificate's notAfter in Unix ms, or null when the PEM cannot be read. */
export function certificateExpiry(certPem: string): number | null {
  try {
    const at = describeCertificate(certPem).notAfter.getTime();
    return Number.isFinite(at) ? at : null;
  } catch {
    return null;
  }
}

/** What `revoke` did, and what a running hub does next. */
export interface RevokeResult {
  /** false when the thing was already revoked */
  changed: boolean;
  /** hub.yml `broker.crlFiles`, rewritten now */
  brokerCrlFiles: string[];
  /** hub.yml `broker.reloadCommand`: what a running hub runs after rewriting the CRL files */
  reloadCommand: string[] | undefined;
  /**
   * The broker `hub serve` uses without `--broker`: `rabbitmq` when hub.yml has
   * `broker.rabbitmq` (the hub closes the thing's connections through the management API and
   * its auth backend refuses it), `external` with `broker.external` (Mosquitto's dynamic security
   * plugin, told by the hub), else `embedded` (the hub disconnects it itself).
   */
  configuredBroker: "rabbitmq" | "external" | "embedded";
}

/**
 * The thing use cases over one hub home and store. It keeps only a cache of certificate expiries
 * (by serial), so one per process is enough; times are Unix ms.
 */
export class Things {
  private readonly now: () => number;
  /** certificate expiry by serial: parsing a PEM per row per page view would be wasted work */
  private readonly expiries = new Map<string, number | null>();

  constructor(private readonly deps: ThingsDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * One page of things whose full name contains `nameContains` (ASCII letters in any case), each
   * summarised (ThingSummary). `offset` and `limit` are clamped to 0..2^53-1 and
   * 1..MAX_THINGS_PAGE (a NaN or an infinity to their defaults): an integer past SQLite's
   * 64 bits would fail as a "datatype mismatch".
   */
  async overview(query: { nameContains?: string; offset?: number; limit?: number } = {}): Promise<ThingOverview> {
    const whole = (n: number | undefined, fallback: number) => (n !== undefined && Number.isFinite(n) ? Math.floor(n) : fallback);
    const offset = Math.min(Number.MAX_SAFE_INTEGER, Math.max(0, whole(query.offset, 0)));
    const limit = Math.min(MAX_THINGS_PAGE, Math.max(1, whole(query.limit, 50)));
    const { total, things } = await this.deps.store.thingPage({ nameContains: query.nameContains?.trim() || undefined, offset, limit });
    return { total, offset, limit, items: await this.summarise(things) };
  }

  /** The summary (ThingSummary) of one thing. */
  async summary(thing: ThingRecord): Promise<ThingSummary> {
    return (await this.summarise([thing]))[0]!;
  }

  /** Whether the thing is connected now; null when nobody can tell. */
  isConnected(thing: Pick<ThingRecord, "name">): boolean | null {
    return this.deps.isConnected?.(thing.name) ?? null;
  }

  private async summarise(things: ThingRecord[]): Promise<ThingSummary[]> {
    const counts = await this.deps.store.messageCounts(things.map((t) => t.id));
    return things.map((thing) => ({
      thing,
      status: thingStatus(thing),
      connected: this.isConnected(thing),
      messages: counts.get(thing.id) ?? { egress: 0, ingress: 0 },
      certExpiresAt: this.certExpiry(thing),
    }));
  }

  private certExpiry(thing: ThingRecord): number | null {
    if (!this.expiries.has(thing.certSerial)) this.expiries.set(thing.certSerial, certificateExpiry(thing.certPem));
    return this.expiries.get(thing.certSerial)!;
  }

  /** Every thing, or those that pass `filter` (parseThingFilter), in the store's order. */
  async list(filter: ThingFilter = {}): Promise<ThingRecord[]> {
    const all = await this.deps.store.listThings();
    return filter.nameContains || filter.status ? all.filter((thing) => matchesThingFilter(thing, filter)) : all;
  }

  /** The thing with this id (a UUID in any case), or undefined. */
  async get(id: string): Promise<ThingRecord | undefined> {
    return this.deps.store.getThing(id.toLowerCase());
  }

  /** The things of `ids` (UUIDs, any case) to send to, in one lookup, in the order given; undefined where there is none. */
  async targets(ids: readonly string[]): Promise<(ThingTarget | undefined)[]> {
    const wanted = ids.map((id) => id.toLowerCase());
    const found = new Map((await this.deps.store.getThingTargets(wanted)).map((thing) => [thing.id, thing]));
    return wanted.map((id) => found.get(id));
  }

  /** The thing named by `ref`: its id, its full name or the name the owner typed. */
  find(ref: string): Promise<ThingRecord | undefined> {
    return findThing(this.deps.home, this.deps.store, ref);
  }

  /**
   * Provisions a thing (provision.ts): `typedName` and `keyType` as a caller sent them. Returns
   * the record and the path of its distribution zip. Throws InputError (a bad name or key type)
   * or ConflictError (the name is taken).
   */
  create(typedName: unknown, options: { keyType?: unknown } = {}): Promise<CreatedThing> {
    return createThing(this.deps.home, this.deps.store, typedName as string, this.now, options);
  }

  /**
   * The thing's distribution zip, or why it has none, in words for the owner (`missing`): it was
   * revoked (the zip, which holds its private key, was deleted), it enrolled itself (its key
   * never left the device), it renewed its key since (the renewal deleted the zip; one made
   * before would be refused: CONNACK 5, and its collect 401), or the file is gone from `dists/`.
   */
  distribution(thing: ThingRecord): { zip: Uint8Array; stale: string[] } | { missing: string } {
    if (thing.enrolledWith != null) return { missing: "it enrolled itself: its key never left the device" };
    if (thing.revokedAt !== null) return { missing: "it was revoked, and its distribution, whose key the hub now refuses, is not handed out" };
    const zip = readDistribution(this.deps.home, thing.id);
    // A renewal deletes the zip (its key is then no longer accepted), so a missing zip is most
    // often that, and only otherwise a file someone removed.
    if (!zip) {
      return {
        missing:
          "its zip is not in the hub's dists/ folder: the thing renewed its key on the device since (the hub then deletes the zip, whose key is no longer accepted), or the file was removed; create the thing again, or enrol it",
      };
    }
    let holdsKey: boolean;
    try {
      holdsKey = distributionHoldsKey(zip, thing);
    } catch (err) {
      // fflate's "invalid zip data": a truncated copy or restore of dists/
      const file = distributionPath(this.deps.home.paths, thing.id);
      return { missing: `its zip ${file} is damaged (${(err as Error).message}): restore it from your backup of the hub home, or create the thing again` };
    }
    if (!holdsKey) {
      return { missing: "it renewed its key on the device since: the zip's key is no longer accepted (create the thing again, or enrol it)" };
    }
    return { zip, stale: staleAddresses(zip, this.deps.home) };
  }

  /**
   * Revokes the thing: it can no longer connect (the broker's directory refuses revoked things;
   * a running hub disconnects it within seconds) or collect, and its distribution, with its
   * private key, is deleted; its messages stay. The CRLs are rewritten (revocation.ts), already
   * revoked or not, so an external broker refuses its certificate too. Returns whether it was
   * revoked now, the CRL files an external broker reads (hub.yml `broker.crlFiles`), the command
   * a running hub runs after rewriting them (`broker.reloadCommand`), and which broker hub.yml
   * configures, so the caller can say what shuts the thing out.
   */
  async revoke(thing: ThingRecord): Promise<RevokeResult> {
    const { home, store } = this.deps;
    const changed = await store.revokeThing(thing.id, this.now());
    // The CRLs before the disconnect: a running hub's disconnect also has an external broker re-read them.
    await revokedAnyway(
      thing,
      "revoked",
      distributionPath(home.paths, thing.id),
      () => writeRevocationLists(home, store),
      () => changed && this.deps.disconnect?.(thing.name),
    );
    const broker = home.settings.broker;
    return {
      changed,
      brokerCrlFiles: broker.crlFiles,
      reloadCommand: broker.reloadCommand,
      // What `hub serve` uses without --broker: the cluster hub.yml names, else the embedded broker.
      configuredBroker: broker.rabbitmq ? "rabbitmq" : broker.external ? "external" : "embedded",
    };
  }

  /**
   * Deletes the thing, its messages and its distribution, and disconnects it from a running
   * broker. Its certificates stay refused: they go on the CRLs (as superseded, until a day after
   * they expire), which are rewritten now, so a device still holding them cannot connect to an
   * external broker, nor as a new thing given the same name (the embedded broker also checks the
   * key). A hub serving in another process disconnects it within seconds (it sees the CRL change).
   */
  async delete(thing: ThingRecord): Promise<void> {
    const { home, store } = this.deps;
    const certificates = [{ serial: thing.certSerial, notAfter: thing.certNotAfter ?? describeCertificate(thing.certPem).notAfter.getTime() }];
    if (thing.previousCertSerial && thing.previousCertNotAfter != null)
      certificates.push({ serial: thing.previousCertSerial, notAfter: thing.previousCertNotAfter });
    await store.deleteThing(thing.id, { at: this.now(), certificates });
    await revokedAnyway(
      thing,
      "deleted",
      distributionPath(home.paths, thing.id),
      () => writeRevocationLists(home, store),
      () => this.deps.disconnect?.(thing.name),
    );
  }
}

/**
 * What follows a committed revoke or delete, each step whatever the others did: the thing's
 * distribution zip (it holds the private key) is removed, the CRLs are written, and the thing is
 * shut out (`disconnect`). A step that fails does not undo what is done, and the error says so,
 * with the kind of the first failure: `<name> is revoked (...), but the CRL could not be written
 * to ...` (74), `... but the CRL could not be made (<the CA key's fault>) ...` (78), `... but
 * its distribution zip <file> ... could not be removed (...)` (77 for EACCES). A zip left behind used to stop the CRL and the disconnect, and the caller heard
 * "try again" for a change already made (a retried delete then found no thing: the zip stayed).
 */
async function revokedAnyway(
  thing: ThingRecord,
  done: "revoked" | "deleted",
  zip: string,
  writeCrls: () => Promise<unknown>,
  disconnect: () => unknown,
): Promise<void> {
  const failures: FlashlexError[] = [];
  try {
    rmSync(zip, { force: true });
  } catch (err) {
    const why = toFlashlexError(err);
    const reason = why.message.startsWith(`${zip}: `) ? why.message.slice(zip.length + 2) : why.message;
    failures.push(
      new FlashlexError(`its distribution zip ${zip}, which holds its private key, could not be removed (${reason}); remove it by hand`, why.kind, {
        cause: err,
      }),
    );
  }
  try {
    await writeCrls();
  } catch (err) {
    // the CRL files hub.yml names (CrlFilesNotWritten), or the CRL itself: a CA key that cannot sign, the hub's crl.pem
    failures.push(err instanceof CrlFilesNotWritten ? err : crlNotSigned(err));
  } finally {
    disconnect();
  }
  const [first] = failures;
  if (first) {
    const but = failures.map((f) => f.message).join("; and ");
    // the operator asked for this change: the whole sentence is theirs to read, the API's answer included
    throw new FlashlexError(`${thing.name} is ${done} (the hub refuses it from now on), but ${but}`, first.kind, { cause: first, clientSafe: true });
  }
}

function crlNotSigned(err: unknown): FlashlexError {
  const why = toFlashlexError(err);
  return new FlashlexError(
    `the CRL could not be made (${why.message}): a broker reading it goes on taking the certificate until a later revoke or delete writes it`,
    why.kind,
    {
      cause: err,
    },
  );
}

/** Whether the zip's public key file is the thing's current key (renewal replaces it on the device). */
/**
 * The hub addresses the zip's config.yml gives that hub.yml no longer does (the hub moved since
 * the thing was made: new-user pass 27, F4), each as `setting is OLD; hub.yml now says NEW`.
 * Empty when they agree, or when the config cannot be read (the zip is handed out as it is).
 */
function staleAddresses(zip: Uint8Array, home: HubHome): string[] {
  try {
    const file = Object.values(unzipSync(zip, { filter: (f) => f.name.endsWith("/config.yml") }))[0];
    if (!file) return [];
    const config = parse(new TextDecoder().decode(file)) as {
      flashlex?: { app?: { api?: { endpoint?: unknown } }; thing?: { endpoint?: unknown; mqtt?: { port?: unknown } } };
    };
    const { api, broker } = home.settings;
    const pairs: [string, unknown, string | number][] = [
      ["flashlex.app.api.endpoint", config.flashlex?.app?.api?.endpoint, api.publicUrl],
      ["flashlex.thing.endpoint", config.flashlex?.thing?.endpoint, broker.host],
      ["flashlex.thing.mqtt.port", config.flashlex?.thing?.mqtt?.port, broker.port],
    ];
    return pairs.filter(([, was, now]) => String(was) !== String(now)).map(([setting, was, now]) => `${setting} is ${String(was)}; hub.yml now says ${now}`);
  } catch {
    return [];
  }
}

function distributionHoldsKey(zip: Uint8Array, thing: Pick<ThingRecord, "name" | "publicKeyPem">): boolean {
  const name = `keys/${keyFileNames(thing.name).publicKey}`;
  const files = unzipSync(zip, { filter: (file) => file.name.endsWith(name) });
  const key = Object.values(files)[0];
  return key !== undefined && new TextDecoder().decode(key).trim() === thing.publicKeyPem.trim();
}
