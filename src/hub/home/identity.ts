import { describeCertificate } from "../../crypto/certificate-info.ts";
import { ConfigError } from "../../shared/errors.ts";
import { type HubIdentity, type HubStore, sameHubIdentity } from "../store/hub-store.ts";
import { type HubHome, readCaCertificate } from "./home.ts";

/** The identity of the hub home `home`: its owner id and its CA certificate's SHA-256 fingerprint. */
export function homeIdentity(home: Pick<HubHome, "paths" | "settings">): HubIdentity {
  return { ownerId: home.settings.ownerId, caFingerprint: describeCertificate(readCaCertificate(home.paths)).fingerprint256 };
}

/**
 * Checks that `store` is the database of the hub home `home`, for every command that opens it
 * (and `hub init`, which records it). A database no hub has claimed yet (made before the
 * identity was recorded) is adopted by the first home that opens it. Throws ConfigError (78)
 * naming both hubs and where the database came from when they differ: a home pointed at another
 * hub's database would mix two owners' things (names, CAs) in one place.
 */
export async function checkHubIdentity(home: HubHome, store: HubStore, now: number = Date.now()): Promise<void> {
  const mine = homeIdentity(home);
  const recorded = await store.adoptHubIdentity(mine, now);
  if (sameHubIdentity(recorded, mine)) return;
  throw new ConfigError(
    `${home.database.display}: this database belongs to another hub (owner ${recorded.ownerId}, CA ${recorded.caFingerprint}), not to the hub home ${home.paths.dir} (owner ${mine.ownerId}, CA ${mine.caFingerprint}): check --db, $FLASHLEX_HUB_DB and hub.database.url in ${home.paths.config}`,
  );
}
