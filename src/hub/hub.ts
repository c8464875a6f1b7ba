/**
 * src/hub: the hub, the cloud half, self-hosted.
 *
 *   hub.ts      the use cases over one hub home and database (for the service and for commands)
 *   service.ts  `hub serve`: broker, API and database in one process, one lifecycle
 *   home/       the hub home: paths, settings (hub.yml), `hub init`, operator tokens
 *   store/      the hub database
 *   things/     the thing use cases: create, revoke (and the CRLs), delete, distribution and
 *               its one-time download lines, certificates (renewal, rotation, expiry)
 *   enrolment/  enrolment tokens and devices that enrol themselves with their own key
 *   messages/   the message use cases: send ingress, collect egress, ingress delivery, archive
 *   broker/     the MQTT broker seam: embedded aedes, an external broker, Mosquitto's files,
 *               and what the hub does with MQTT traffic (events.ts)
 *   http/       the HTTP API: routes, presenters, the envelope, the Bun server, the CLI's client
 *   updates/    signed self-update: the update key, releases, rollouts (docs/updates.md)
 *
 * Every rule lives in one use case (things/, messages/, home/tokens.ts) that the CLI, the HTTP
 * API and the broker's events call; none of them touches the database directly.
 */
import type { Logger } from "../shared/log.ts";
import type { HubBroker } from "./broker/broker.ts";
import { writeMosquittoFiles, writtenAnyway } from "./broker/mosquitto-files.ts";
import { writeRabbitFiles } from "./broker/rabbitmq-files.ts";
import { ConsoleSessions } from "./console/sessions.ts";
import { Enrolment } from "./enrolment/enrolment.ts";
import { type DatabaseOverride, type HubHome, openHubHome } from "./home/home.ts";
import { checkHubIdentity } from "./home/identity.ts";
import { OperatorTokens } from "./home/tokens.ts";
import { Collector } from "./messages/collect.ts";
import { MessageFeed } from "./messages/feed.ts";
import { Messages } from "./messages/messages.ts";
import type { HubStore } from "./store/hub-store.ts";
import { openHubStore } from "./store/open-store.ts";
import { ThingCertificates } from "./things/certificates.ts";
import { DownloadTokens } from "./things/download-tokens.ts";
import { writeRevocationLists } from "./things/revocation.ts";
import { Things } from "./things/things.ts";
import { Updates } from "./updates/updates.ts";

/** The hub's use cases over one home and database. */
export interface HubUseCases {
  home: HubHome;
  things: Things;
  /** one-time download lines for a thing's zip (things/download-tokens.ts) */
  downloads: DownloadTokens;
  messages: Messages;
  collector: Collector;
  operators: OperatorTokens;
  /** what happens to messages in this process (the use cases publish, /metrics counts) */
  feed: MessageFeed;
  /**
   * what the console's live view watches: `feed` itself on SQLite (one hub); on a served
   * database, what every hub stored (messages/fleet-feed.ts)
   */
  live: MessageFeed;
  /** releases, rollouts, what things run (the update tables of the store) */
  updates: Updates;
  /** enrolment tokens and self-enrolment (enrolment/) */
  enrolment: Enrolment;
  /** thing certificates: renewal, rotation requests, expiry (things/certificates.ts) */
  certificates: ThingCertificates;
  /** the console's sign-ins, kept in the database (console/sessions.ts) */
  consoleSessions: ConsoleSessions;
}

export interface HubUseCaseDeps {
  home: HubHome;
  store: HubStore;
  log: Logger;
  /** the running hub's broker: ingress can be sent, things can be disconnected */
  broker?: HubBroker;
  /** disconnects a thing from the running broker (after revoke or delete) */
  disconnect?: (thingName: string) => void;
  /** the collector, when the broker's events made it first (service.ts) */
  collector?: Collector;
  /** the live feed, when the broker's parts were given it first (service.ts) */
  feed?: MessageFeed;
  /** the console's feed, when not `feed` (service.ts, on a served database) */
  live?: MessageFeed;
  /** Unix ms */
  now?: () => number;
}

/** Builds the use cases over `store`; they share it and its clock. */
export function hubUseCases(deps: HubUseCaseDeps): HubUseCases {
  const { home, store, log, now } = deps;
  const feed = deps.feed ?? new MessageFeed();
  const broker = deps.broker;
  const things = new Things({ home, store, now, disconnect: deps.disconnect, isConnected: broker ? (name) => broker.isConnected(name) : undefined });
  return {
    home,
    things,
    downloads: new DownloadTokens({ home, store, now: now ?? Date.now, distribution: (thing) => things.distribution(thing) }),
    messages: new Messages({ home, store, log, broker, now, feed }),
    collector: deps.collector ?? new Collector({ store, log, now, feed }),
    operators: new OperatorTokens(store, now),
    feed,
    live: deps.live ?? feed,
    updates: new Updates({ home, store, now }),
    enrolment: new Enrolment({ home, store, log, now }),
    certificates: new ThingCertificates({ home, store, now }),
    consoleSessions: new ConsoleSessions(store, { now }),
  };
}

/** The hub as a command sees it: the use cases without a broker, `hub mosquitto-config` and `hub rabbitmq-config`. */
export interface OpenedHub extends HubUseCases {
  writeMosquittoFiles(options: Parameters<typeof writeMosquittoFiles>[2]): ReturnType<typeof writeMosquittoFiles>;
  /** `hub rabbitmq-config`: a RabbitMQ cluster's files, and hub.yml pointed at it */
  writeRabbitFiles(options: Parameters<typeof writeRabbitFiles>[1]): Promise<ReturnType<typeof writeRabbitFiles>>;
}

/**
 * Opens the hub home in `dir` and its database for the length of `fn`, for a command that runs
 * beside (or without) `hub serve`, on the database `database` names (`--db`), else hub.yml's.
 * Throws ConfigError (78) when `dir` is not a hub home, what openHubStore throws (69 for a
 * PostgreSQL server that cannot be reached).
 */
export async function withHub<T>(dir: string, log: Logger, fn: (hub: OpenedHub) => Promise<T>, database?: DatabaseOverride): Promise<T> {
  const home = openHubHome(dir, log, database);
  const store = await openHubStore(home.database, { log });
  await checkHubIdentity(home, store).catch(async (err) => {
    await store.close();
    throw err;
  });
  const useCases = hubUseCases({ home, store, log });
  try {
    return await fn({
      ...useCases,
      writeMosquittoFiles: (options) => writeMosquittoFiles(home, store, options),
      writeRabbitFiles: async (options) => {
        const written = writeRabbitFiles(home, options);
        // Re-read the home: hub.yml now lists the nodes' CRL file, and this writes it (before the
        // nodes start: without it, RabbitMQ's CRL check refuses every client).
        await writtenAnyway(options.dir, () => writeRevocationLists(openHubHome(home.paths.dir), store));
        return written;
      },
    });
  } finally {
    await store.close();
  }
}
