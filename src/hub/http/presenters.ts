/**
 * What the API answers with for a thing and a message: plain JSON, no key material, times as
 * ISO strings. The CLI's `--json` prints the same shapes.
 */
import { thingTopics } from "../../protocol/topics.ts";
import { isoSeconds } from "../../shared/time.ts";
import { storedMessageJson } from "../messages/archive.ts";
import type { MessageRecord, ThingRecord } from "../store/hub-store.ts";
import { thingKeyType } from "../things/provision.ts";
import { thingStatus } from "../things/things.ts";

/** JSON of a thing; `env` is the API's path segment, for the distribution's route. */
export function thingJson(thing: ThingRecord, env: string) {
  const iso = (ms: number | null) => (ms === null ? null : isoSeconds(ms));
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
    keyType: thingKeyType(thing),
    topics: thingTopics(thing.name),
    distribution: thing.revokedAt === null ? `/${env}/v1/things/${thing.id}/dist` : null,
  };
}

/**
 * A stored message for the messages route: the archive's format, plus for ingress what the hub
 * knows of its delivery (the archive keeps the old cloud's keys only).
 */
export function messageJson(m: MessageRecord, ownerId: string) {
  const json = storedMessageJson(m, ownerId);
  if (m.messagetype !== "ingress") return json;
  return { ...json, delivery: m.delivery ?? "unknown", deliveredAt: m.deliveredAt == null ? null : isoSeconds(m.deliveredAt) };
}
