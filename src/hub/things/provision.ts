import { randomUUID } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadPublicKey, THING_KEY_TYPES, type ThingKeyType, thingKeyTypeOf } from "../../crypto/keys.ts";
import { isUuid, TYPED_THING_NAME, TYPED_THING_NAME_RULE } from "../../protocol/ids.ts";
import { ConflictError, InputError } from "../../shared/errors.ts";
import { temporaryTarget } from "../../shared/files.ts";
import { describeError, quoteGiven } from "../../shared/log.ts";
import { readRegularFile } from "../../shared/regular-file.ts";
import type { HubHome } from "../home/home.ts";
import { distributionPath } from "../home/paths.ts";
import { ownerPrefix } from "../home/settings.ts";
import { type HubStore, isThingNameTaken, type ThingRecord } from "../store/hub-store.ts";
import { updateKey } from "../updates/update-key.ts";
import { makeThingMaterialOffThread } from "./material-thread.ts";

/**
 * Provisioning, as the guide's "Create Thing" did it: an id, the prefixed name, a key pair, a
 * certificate from the hub CA, the topics, and the distribution zip.
 *
 * The hub keeps the zip (mode 0600, in `dists/`) because the guide lets the owner download the
 * distribution again (its cURL route). That zip holds the thing's private key: it is the one copy
 * of a thing key on the hub, protected like the CA key, and `revoke`/delete removes it. The
 * database keeps only the public key and the certificate.
 */

/**
 * `name` as the owner typed it, once it is TYPED_THING_NAME, not a UUID and not prefixed with the
 * owner prefix (each would be found as another thing). Throws InputError (65/400) otherwise.
 */
export function validateThingName(name: unknown, ownerPrefixOfHub: string): string {
  if (typeof name !== "string" || !TYPED_THING_NAME.test(name)) {
    // the name as given, cut short: one of 300 characters filled the line
    if (name === undefined) throw new InputError(`no thing name was given: a thing name is ${TYPED_THING_NAME_RULE}`);
    const shown = typeof name === "string" ? quoteGiven(name) : `a ${name === null ? "null" : typeof name}`;
    throw new InputError(`${shown}: a thing name is ${TYPED_THING_NAME_RULE}`);
  }
  // Commands find a thing by id, then full name, then typed name (findThing): a typed name that
  // looks like either would be found as another thing, by `revoke` and `delete` too.
  if (isUuid(name as unknown)) throw new InputError(`${name}: a thing's name may not be a UUID: it would be taken for a thing id`);
  // in any case: 3DFED641-kitchen reads as the same hex prefix to a person
  if (name.toLowerCase().startsWith(`${ownerPrefixOfHub}-`)) {
    throw new InputError(
      `${name}: give the name without the owner prefix ${ownerPrefixOfHub}- (the hub adds it, and a name that starts with it would be taken for another thing's full name)`,
    );
  }
  return name;
}

/** `keyType` of a create request: "rsa" (the default, what every FlashLex thing had) or "ec" (P-256, ES256 tokens). */
export function validateKeyType(keyType: unknown): ThingKeyType {
  if (keyType === undefined) return "rsa";
  if (typeof keyType !== "string" || !(THING_KEY_TYPES as readonly string[]).includes(keyType)) {
    throw new InputError(`keyType must be ${THING_KEY_TYPES.join(" or ")}`);
  }
  return keyType as ThingKeyType;
}

/** The kind of key a thing registered (its tokens are RS256 for rsa, ES256/ES384 for ec); "unknown" if the stored key cannot be read. */
export function thingKeyType(thing: Pick<ThingRecord, "publicKeyPem">): ThingKeyType | "unknown" {
  try {
    return thingKeyTypeOf(loadPublicKey(thing.publicKeyPem));
  } catch {
    return "unknown";
  }
}

export interface CreatedThing {
  thing: ThingRecord;
  /** where the distribution zip was written (0600) */
  distribution: string;
}

/**
 * Provisions a thing named `typedName` with a new key of `opts.keyType` (default rsa: RSA-2048,
 * RS256 tokens; ec: P-256, ES256 tokens), its certificate from the hub CA and its distribution.
 * Throws InputError (a bad name or key type; a name that is a UUID or starts with the owner prefix) or ConflictError (the name is taken).
 */
export async function createThing(
  home: HubHome,
  store: HubStore,
  typedName: string,
  now: () => number = Date.now,
  opts: { keyType?: unknown } = {},
): Promise<CreatedThing> {
  const prefix = ownerPrefix(home.settings);
  const shortName = validateThingName(typedName, prefix);
  const keyType = validateKeyType(opts.keyType);
  const name = `${prefix}-${shortName}`;
  const existing = await store.getThingByName(name);
  if (existing) {
    // a revoked thing keeps its name (its messages stay readable): only a delete frees it
    const free = existing.revokedAt
      ? ` (revoked; \`flashlex hub thing delete ${name}\` removes it and frees the name)`
      : `: pick another name, or \`flashlex hub thing delete ${name}\` first (its messages go with it)`;
    throw new ConflictError(`a thing named ${name} already exists${free}`);
  }

  const id = randomUUID();
  const values = {
    thingId: id,
    thingName: name,
    apiEndpoint: home.settings.api.publicUrl,
    env: home.settings.env,
    brokerHost: home.settings.broker.host,
    brokerPort: home.settings.broker.port,
    // every distribution pins the hub's release-signing key (made here for a home older than updates)
    updatePublicKey: await updateKey(home, store),
  };
  // Key, certificate and zip (written there, synced) are made on a worker thread: the hub keeps
  // answering meanwhile. The zip first, then the row: a thing in the database always has its
  // distribution. Marked as this home's create in flight until the row is in: a kill in between
  // leaves a zip that `hub serve` then knows to remove (removeOrphanDistributions).
  const file = distributionPath(home.paths, id);
  const mark = markCreating(home, id);
  try {
    const material = await makeThingMaterialOffThread({
      ca: { caCert: home.paths.caCert, caKey: home.paths.caKey },
      thingName: name,
      keyType,
      values,
      mtime: Date.now(),
      distribution: file,
    });
    const thing: ThingRecord = {
      id,
      name,
      shortName,
      publicKeyPem: material.publicKeyPem,
      certPem: material.certPem,
      certSerial: material.certSerial,
      certNotAfter: material.certNotAfter,
      createdAt: now(),
      verifiedAt: null,
      lastSeenAt: null,
      revokedAt: null,
    };
    await nextTurn();
    try {
      await store.insertThing(thing);
    } catch (err) {
      rmSync(file, { force: true });
      // Two creates racing for one name: the UNIQUE constraint decides, the loser hears why.
      if (isThingNameTaken(err)) throw new ConflictError(`a thing named ${name} already exists`);
      throw err;
    }
    return { thing, distribution: file };
  } finally {
    // A mark that stays (EACCES) costs nothing: `hub serve` finds the row and removes it then.
    try {
      rmSync(mark, { force: true });
    } catch {}
  }
}

/**
 * Marks thing `id`'s create as in flight in this home (an empty file in creating/) and gives the
 * mark's path. Best effort, and not synced: a mark that could not be made, or that a power cut
 * takes back, only leaves a killed create's zip unremoved, as before marks existed; it never gets
 * a zip removed wrongly, and never stops the create.
 */
function markCreating(home: HubHome, id: string): string {
  const mark = join(home.paths.creating, id);
  try {
    mkdirSync(home.paths.creating, { recursive: true, mode: 0o700 });
    writeFileSync(mark, "", { mode: 0o600 });
  } catch {}
  return mark;
}

/** Lets the events already waiting (API requests, broker packets) run first. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Finds a thing by id (either case), full name or typed name (the CLI accepts any of them). */
export async function findThing(home: HubHome, store: HubStore, ref: string): Promise<ThingRecord | undefined> {
  // ids are stored in lower case; a UUID typed or pasted in upper case is the same thing
  return (
    (await store.getThing(isUuid(ref) ? ref.toLowerCase() : ref)) ??
    (await store.getThingByName(ref)) ??
    (await store.getThingByName(`${ownerPrefix(home.settings)}-${ref}`))
  );
}

/** The largest distribution zip read (bytes): one is ~25 KB. */
const MAX_DISTRIBUTION_BYTES = 16 * 1024 * 1024;

/**
 * The stored distribution, or undefined when there is none (revoked, deleted, renewed since).
 * Throws what reading it throws otherwise (EACCES: a zip an older root-run command left root's),
 * so a zip that is there is never reported missing, with "create the thing again" as the advice;
 * ConfigError (78) for a FIFO, device or directory in its place, or one over 16 MiB, which are
 * never read (a FIFO held the hub's whole event loop, broker included, until a writer came).
 */
export function readDistribution(home: HubHome, thingId: string): Uint8Array | undefined {
  try {
    return readRegularFile(distributionPath(home.paths, thingId), "distribution zip", MAX_DISTRIBUTION_BYTES);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** How old a create's mark must be before the create is taken for one that died (ms): a create writes its row within seconds of its mark. */
const ORPHAN_AGE_MS = 10 * 60_000;

/** Why a zip in dists/ is no thing's distribution (removeOrphanDistributions). */
export type OrphanKind = "killed create" | "revoked";

/**
 * Removes the distribution zips in dists/ that are no thing's, and only those this hub can tell:
 *
 * - a create of this home killed between its zip and its row (SIGKILL, a power cut): its mark in
 *   creating/ is more than 10 minutes older than `now` (Unix ms) and the database has no row for
 *   it. The zip holds a private key and a certificate the hub CA signed for a name no row holds,
 *   which no command would show or remove. So does the temporary file the zip was being written
 *   to (`.<id>.zip.<pid>-<random>.tmp`), when the kill came mid-write. The mark goes too (also
 *   when the row is there: the kill came after it).
 * - a revoked thing's: a revoke or delete that could not remove it then (a dists/ another user
 *   owned, mounted read-only) said so once, and the zip, never handed out again, held the
 *   thing's key until someone removed it.
 *
 * A zip with no row and no mark is left alone: another hub's (dists/ is shared, `hub.sharedDir`),
 * or one a newer copy of this hub's database holds (a test hub on yesterday's backup). An entry,
 * or a whole directory, that cannot be looked at is reported (`left`, `unchecked`) and does not
 * stop the rest. Gives the ids removed and those that could not be (and why); throws what the
 * store throws.
 */
export async function removeOrphanDistributions(
  home: HubHome,
  store: HubStore,
  now: number,
): Promise<{
  removed: { id: string; kind: OrphanKind }[];
  left: { id: string; kind: OrphanKind; reason: string }[];
  unchecked: { dir: string; reason: string }[];
}> {
  const removed: { id: string; kind: OrphanKind }[] = [];
  const left: { id: string; kind: OrphanKind; reason: string }[] = [];
  const unchecked: { dir: string; reason: string }[] = [];
  /** The names in `dir`: none when it is not there, or cannot be listed (said in `unchecked`). */
  const namesIn = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") unchecked.push({ dir, reason: describeError(err) });
      return [];
    }
  };
  const marks: string[] = [];
  for (const id of namesIn(home.paths.creating).filter(isUuid)) {
    try {
      const at = statSync(join(home.paths.creating, id), { throwIfNoEntry: false })?.mtimeMs;
      if (at !== undefined && now - at > ORPHAN_AGE_MS) marks.push(id);
    } catch (err) {
      left.push({ id, kind: "killed create", reason: describeError(err) });
    }
  }
  const zips: string[] = [];
  /** The temporaries in dists/ by the zip they were for (`.<id>.zip.<pid>-<random>.tmp`). */
  const temporaries = new Map<string, string[]>();
  for (const name of namesIn(home.paths.dists)) {
    const target = temporaryTarget(name) ?? name;
    const id = target.endsWith(".zip") ? target.slice(0, -".zip".length) : "";
    if (!isUuid(id)) continue;
    if (target === name) zips.push(id);
    else temporaries.set(id, [...(temporaries.get(id) ?? []), name]);
  }
  if (marks.length + zips.length === 0) return { removed, left, unchecked };
  const things = new Map((await store.getThingTargets([...new Set([...marks, ...zips])])).map((t) => [t.id, t]));
  /** Removes `path`; false (and the reason in `left`) when it could not be. */
  const removeFile = (path: string, id: string, kind: OrphanKind) => {
    try {
      rmSync(path, { force: true });
      return true;
    } catch (err) {
      left.push({ id, kind, reason: describeError(err) });
      return false;
    }
  };
  /** Removes `files` (the zip, and for a killed create the temporaries it wrote the zip through); false when one stayed. */
  const remove = (id: string, kind: OrphanKind, files: string[]) => {
    // a create killed before its zip was written left only its mark: nothing to report
    let there = false;
    let gone = true;
    for (const file of files) {
      try {
        there ||= lstatSync(file, { throwIfNoEntry: false }) !== undefined;
      } catch {
        there = true;
      }
      gone = removeFile(file, id, kind) && gone;
    }
    if (gone && there) removed.push({ id, kind });
    return gone;
  };
  for (const id of marks) {
    // A killed create's temporary zip holds the same key as its zip: it goes too. Only this create
    // wrote it (its mark is this home's), so no writer's pid need be judged, which on a shared
    // hub.sharedDir could be another host's. The zip first: a mark kept means the next start tries again.
    const files = [distributionPath(home.paths, id), ...(temporaries.get(id) ?? []).map((name) => join(home.paths.dists, name))];
    if (things.has(id) || remove(id, "killed create", files)) removeFile(join(home.paths.creating, id), id, "killed create");
  }
  for (const id of zips) if (things.get(id)?.revokedAt != null) remove(id, "revoked", [distributionPath(home.paths, id)]);
  return { removed, left, unchecked };
}
