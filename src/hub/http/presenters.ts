/**
 * What the API answers with for a thing and a message: plain JSON, no key material, times as
 * ISO strings. The CLI's `--json` prints the same shapes.
 */
import { thingTopics } from "../../protocol/topics.ts";
import { isoSeconds } from "../../shared/time.ts";
import type { EnrolmentTokenState } from "../enrolment/tokens.ts";
import { storedMessageJson } from "../messages/archive.ts";
import type { EnrolmentTokenRecord, MessageRecord, ThingRecord } from "../store/hub-store.ts";
import type { RolloutRow } from "../store/update-tables.ts";
import { certificateNotAfter, type RenewalAdvice } from "../things/certificates.ts";
import { thingKeyType } from "../things/provision.ts";
import { thingStatus } from "../things/things.ts";
import type { RolloutStatus } from "../updates/updates.ts";

/** Unix ms as ISO 8601 to the second, as every answer gives times; null for none. */
const iso = (ms: number | null): string | null => (ms === null ? null : isoSeconds(ms));

/** JSON of a thing; `env` is the API's path segment, for the distribution's route. */
export function thingJson(thing: ThingRecord, env: string) {
  return {
    id: thing.id,
    name: thing.name,
    shortName: thing.shortName,
    status: thingStatus(thing),
    createdAt: iso(thing.createdAt),
    verifiedAt: iso(thing.verifiedAt),
    lastSeenAt: iso(thing.lastSeenAt),
    revokedAt: iso(thing.revokedAt),
    certificateSerial: thing.certSerial,
    certificateNotAfter: iso(certificateNotAfter(thing)),
    renewalRequested: thing.renewRequestedAt != null,
    enrolled: thing.enrolledWith != null,
    keyType: thingKeyType(thing),
    topics: thingTopics(thing.name),
    // an enrolled thing has no distribution: its key never left it
    distribution: thing.revokedAt === null && thing.enrolledWith == null ? `/${env}/v1/things/${thing.id}/dist` : null,
  };
}

/**
 * A stored message for the messages route: the archive's format, plus for ingress what the hub
 * knows of its delivery (the archive keeps the old cloud's keys only).
 */
export function messageJson(m: MessageRecord, ownerId: string) {
  const json = storedMessageJson(m, ownerId);
  if (m.messagetype !== "ingress") return json;
  return { ...json, delivery: m.delivery ?? "unknown", deliveredAt: iso(m.deliveredAt ?? null) };
}

/** JSON of an enrolment token: never its hash, never the token (that is shown once, when made). */
export function enrolmentTokenJson(t: EnrolmentTokenRecord & { state: EnrolmentTokenState }) {
  return {
    id: t.id,
    state: t.state,
    namePrefix: t.namePrefix,
    maxUses: t.maxUses,
    uses: t.uses,
    createdAt: isoSeconds(t.createdAt),
    expiresAt: isoSeconds(t.expiresAt),
    revokedAt: iso(t.revokedAt),
  };
}

/** What a thing's renewal check answers: times as ISO strings and seconds. */
export function renewalAdviceJson(a: RenewalAdvice) {
  return {
    notAfter: iso(a.notAfter),
    renewNow: a.renewNow,
    checkAfterSeconds: Math.max(1, Math.round(a.checkAfterMs / 1000)),
    lifetimeSeconds: Math.round(a.lifetimeMs / 1000),
  };
}

/** JSON of a rollout (`hub update`, `POST /updates`): camelCase, times as ISO 8601 like every other answer. */
export function rolloutJson(rollout: RolloutRow) {
  return {
    id: rollout.id,
    version: rollout.version,
    batchSize: rollout.batch_size,
    maxFailures: rollout.max_failures,
    state: rollout.state,
    stopReason: rollout.stop_reason,
    createdAt: isoSeconds(rollout.created_at),
    finishedAt: iso(rollout.finished_at),
  };
}

/**
 * JSON of the update status (`hub update status --json`, `GET /updates`): the latest rollout
 * (null when there is none) and, for every thing not revoked, what it last said it runs and how
 * its update goes; times as ISO 8601, null when not known.
 */
export function rolloutStatusJson(status: RolloutStatus) {
  return {
    rollout: status.rollout ? rolloutJson(status.rollout) : null,
    things: status.things.map((t) => ({
      id: t.thing_id,
      name: t.name,
      version: t.version,
      target: t.target,
      seenAt: iso(t.seen_at),
      rolloutId: t.rollout_id,
      toVersion: t.to_version,
      batch: t.batch,
      state: t.state,
      detail: t.detail,
      updatedAt: iso(t.updated_at),
      outbox: { depth: t.outbox_depth, oldestAt: iso(t.outbox_oldest_at) },
    })),
  };
}

/** JSON of a stored release (`hub release list`, `GET /releases`): its version, targets and when it was added (ISO 8601). */
export function releaseJson(release: { version: string; manifest: string; added_at: number; stored: boolean }) {
  return {
    version: release.version,
    targets: Object.keys(JSON.parse(release.manifest).targets),
    addedAt: isoSeconds(release.added_at),
    // `hub release remove` (or a hand) took the binaries away: a rollout of it is refused
    binaries: release.stored ? "stored" : "removed",
  };
}
