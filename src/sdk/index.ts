/**
 * FlashlexSDK: what a Bun or Node application on the thing uses, the TypeScript counterpart
 * of the Python SDK's class. It reads the same config as `flashlex serve` and reaches the same
 * data: through the running serve when there is one, else the database file directly.
 *
 *   const sdk = await FlashlexSDK.open({ config: "/home/pi/thing/config.yml" });
 *   const result = await sdk.collectMessage({ foo: "bar" });                   // egress
 *   for (const m of await sdk.getMessages()) { handle(m); await sdk.ackMessages([m.id]); }
 *   sdk.close();
 *
 * Apps install it as the `flashlex-sdk` package that the release builds (scripts/build-sdk.ts):
 * this file is its whole public API. Its types are declared here rather than re-exported, so
 * the package's index.d.ts is one file that names no internal module; `PublicTypesMatch` below
 * keeps each of them equal to the internal type it stands for.
 */
import { exitCodeOf } from "../cli/exit-codes.ts";
import { type ErrorKind as InternalErrorKind, FlashlexError as InternalFlashlexError } from "../shared/errors.ts";
import { toFlashlexError } from "../shared/foreign-errors.ts";
import { type Logger as InternalLogger, silentLogger } from "../shared/log.ts";
import { DatabaseLockedError } from "../shared/sqlite/wasm-lock.ts";
import { checkDataDirectory } from "../thing/config-location.ts";
import type { CollectResult as InternalCollectResult } from "../thing/egress/collect.ts";
import { egressDocumentOf } from "../thing/egress/document.ts";
import type * as store from "../thing/local/access.ts";
import type { OutboxState as InternalOutboxState, ThingAccess } from "../thing/local/access.ts";
import { withCheckedArguments } from "../thing/local/arguments.ts";
import { runningServeAccess, serveListens } from "../thing/local/client.ts";
import { NO_DATABASE_YET, openThingAccess } from "../thing/local/open.ts";
import { resumingAccess } from "../thing/local/resuming.ts";
import { type ConfigLocation as InternalConfigLocation, loadThingConfig, type ThingConfig } from "../thing/settings.ts";
import { databaseState, legacyStoreOf } from "../thing/store/open.ts";

/** Where the thing's files are, as `-c`, `-d` and `-k` on the command line. */
export interface ConfigLocation {
  /** the thing's config.yml */
  config: string;
  /** default: `data/` beside the config file */
  data?: string;
  /** default: as `flashlex serve` finds it */
  keys?: string;
}

/** What `open` read: the files it resolved and the thing they belong to. */
export interface OpenedConfig {
  /** absolute path of config.yml */
  readonly file: string;
  readonly dataDir: string;
  readonly keysDir: string;
  /** the thing's id (a UUID) and name (its MQTT client id) */
  readonly thing: { readonly id: string; readonly name: string };
}

/** An ingress message as stored (times are Unix milliseconds). */
export interface IngressMessage {
  id: number;
  topic: string;
  /** a string when the payload was valid UTF-8 without NUL (JSON always is), bytes otherwise */
  payload: string | Uint8Array;
  qos: number;
  /** 1 when it came as a retained message */
  retain: number;
  received_at: number;
  /** null until acknowledged */
  acked_at: number | null;
  /** the MQTT packet identifier it arrived with (QoS 1), null for QoS 0 */
  packet_id: number | null;
}

export interface IngressQuery {
  /** only messages with a larger id (for following and paging) */
  afterId?: number;
  /** `unacked` (default), `acked` or `all` */
  state?: "unacked" | "acked" | "all";
  topic?: string;
  /** received at or after, Unix ms */
  since?: number;
  limit?: number;
}

/** How an egress message travels: the collect API over HTTPS (default) or MQTT `flashlex/collect`. */
export type OutboxVia = "http" | "mqtt";

/** What `collectMessage` did with one document. */
export interface CollectResult {
  messageId: string;
  /** `queued`: not delivered yet; it waits in the outbox and `serve` delivers it */
  outcome: "sent" | "rejected" | "queued";
  /** the collect API's HTTP status and body, when it answered */
  status?: number;
  body?: string;
  error?: string;
  /** the outcome could not be written to the outbox (a full disk): serve may deliver it again, with the same message id */
  recordError?: string;
}

export type OutboxState = "pending" | "sent" | "rejected";

/** An egress message in the outbox (times are Unix milliseconds). */
export interface OutboxEntry {
  message_id: string;
  body: string;
  via: OutboxVia;
  state: OutboxState;
  created_at: number;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  sent_at: number | null;
  response_status: number | null;
  response_body: string | null;
  /** the thing id that queued it; null for rows from before schema 5 */
  thing_id: string | null;
}

/** What `retryOutbox` / `dropOutbox` did, id by id. */
export interface OutboxChange {
  changed: string[];
  /** no such entry */
  missing: string[];
  /** retry only: already delivered, left alone */
  sent: string[];
}

/** Where the SDK's few log lines go (a stale lock removed, an old store imported); silent by default. */
export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/**
 * What went wrong, as `flashlex` reports it with an exit code: `data` (65: the document is not
 * JSON or too large), `config` (78: the config, a key or a certificate), `try-later` (75: the
 * outbox is full, the database is busy), `unavailable` (69), `io`/`full`/`read-only`/`damaged`
 * (74), `permission` (77), `usage` (64), `bug` (70: please report it); `conflict` (65) is the
 * hub's (a name taken) and never comes from the SDK.
 */
export type ErrorKind = "usage" | "data" | "conflict" | "unavailable" | "bug" | "io" | "full" | "read-only" | "damaged" | "try-later" | "permission" | "config";

/** Every rejection of the SDK is a FlashlexError: a one-line message naming what and where, and its kind. */
export interface FlashlexError extends Error {
  readonly kind: ErrorKind;
  /** the exit code `flashlex` would end with (sysexits) */
  readonly exitCode: number;
}

export interface FlashlexErrorConstructor {
  new (message: string, kind: ErrorKind): FlashlexError;
  readonly prototype: FlashlexError;
}

/**
 * The class itself, for `err instanceof FlashlexError`. The SDK is an edge, like the command
 * line: the agent's errors carry only their kind, and here they also tell the exit code the
 * CLI would end with (src/cli/exit-codes.ts, the one table), as the SDK promises its apps.
 */
Object.defineProperty(InternalFlashlexError.prototype, "exitCode", {
  configurable: true,
  get(this: InternalFlashlexError) {
    return exitCodeOf(this);
  },
});
export const FlashlexError = InternalFlashlexError as unknown as FlashlexErrorConstructor;

/**
 * The thing's data for an app. Made by `open` (not `new`); its calls may overlap and share one
 * access to serve or the database; after `close()` they reject with kind `usage` (64).
 */
export class FlashlexSDK {
  /** the access in use by the calls in flight; opened by the first, closed by the last */
  private shared?: { users: number; access: Promise<ThingAccess> };
  /** the previous access's close, which the next open waits for (the wasm driver holds a file once per process) */
  private lastClose: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly thingConfig: ThingConfig,
    private readonly log: InternalLogger,
    /** `data` was given: it must be there for every call but a collect (checkDataDirectory) */
    private readonly dataGiven: boolean,
  ) {}

  /** What `open` read (paths resolved, the thing's id and name). */
  get config(): OpenedConfig {
    const c = this.thingConfig;
    return { file: c.file, dataDir: c.dataDir, keysDir: c.keysDir, thing: { id: c.yaml.thing.id, name: c.yaml.thing.name } };
  }

  /**
   * Reads and checks the thing's config (`-c`/`-d`/`-k` as on the command line). Rejects with a
   * FlashlexError of kind `config` naming the file and key path when it is wrong, and of kind
   * `usage` (64) for a `data` that is a file or under a directory that is not there (a typo: a
   * database made there would answer "no messages"). A `data` directory not made yet is refused
   * by each call but `collectMessage` (which makes it, as `flashlex collect -d` does). Nothing is
   * opened yet: each call finds out then whether serve runs (and talks to it through its socket,
   * `DATA/flashlex.sock`) or not (and opens the database only for as long as calls are in flight),
   * so an app may open the SDK once and keep it while serve is started and stopped.
   */
  static async open(location: ConfigLocation, options: { log?: Logger } = {}): Promise<FlashlexSDK> {
    try {
      checkOpenArguments(location, options);
      if (location.data !== undefined) checkDataDirectory(location.data, { flag: "FlashlexSDK.open: data", existing: false });
      return new FlashlexSDK(loadThingConfig(location), options?.log ?? silentLogger, location.data !== undefined);
    } catch (err) {
      throw toFlashlexError(err);
    }
  }

  /**
   * Egress, like `flashlex collect`: queues the document durably, then tries to deliver it.
   * `outcome` is `sent` (with the API's `status` and `body`), `rejected`, or `queued` (the
   * API was unreachable; `flashlex serve` delivers it later). Rejects with kind `data` for a
   * value that JSON cannot carry (a BigInt, NaN, a cycle, nesting deeper than 64 levels, a Map,
   * Set, typed array, RegExp or Error that JSON would write as `{}`, a function, symbol, invalid
   * Date or array hole it would drop or write as null, no value at all) or is over the size
   * limit, with kind `usage` (64) for an option it does not know or a `via` that is not `http` or
   * `mqtt`, and with kind `try-later` (exit code 75) when it was not delivered and may not wait
   * (`offlinePublishQueueing` 0, or N already waiting): then nothing was queued, though when the
   * request was sent and not answered the message says the hub may hold it.
   */
  async collectMessage(document: unknown, options: { via?: OutboxVia } = {}): Promise<CollectResult> {
    if (options !== undefined && (options === null || typeof options !== "object" || Array.isArray(options))) {
      throw new InternalFlashlexError(`collectMessage: options must be an object such as {via: "mqtt"}, not ${kindOf(options)}`, "usage");
    }
    // a misspelt option ({vai: "mqtt"}) would send over HTTP without a word, as getMessages' query refuses one
    const unknown = Object.keys(options ?? {}).find((key) => key !== "via");
    if (unknown !== undefined) throw new InternalFlashlexError(`collectMessage: options has no field ${JSON.stringify(unknown)} (it takes via)`, "usage");
    const body = egressDocumentOf(document, "collectMessage");
    return this.use((access) => access.collect(body, options?.via ?? "http"));
  }

  /** Ingress messages, unacknowledged ones by default, oldest first. */
  getMessages(query: IngressQuery = {}): Promise<IngressMessage[]> {
    return this.use((access) => access.listMessages(query), { existingData: true });
  }

  /** Marks messages as handled; resolves to the ids that existed. */
  ackMessages(ids: readonly number[]): Promise<number[]> {
    return this.use((access) => access.ackMessages(ids), { existingData: true });
  }

  /** Deletes messages; resolves to the ids that existed. */
  deleteMessages(ids: readonly number[]): Promise<number[]> {
    return this.use((access) => access.deleteMessages(ids), { existingData: true });
  }

  /** The egress outbox, oldest first, like `flashlex outbox list`; every state unless one is given. */
  listOutbox(state?: OutboxState): Promise<OutboxEntry[]> {
    return this.use((access) => access.listOutbox(state), { existingData: true });
  }

  /** Like `flashlex outbox retry`: rejected (or pending) messages become pending, due now. */
  retryOutbox(messageIds: readonly string[]): Promise<OutboxChange> {
    return this.use((access) => access.retryOutbox(messageIds), { existingData: true });
  }

  /**
   * Like `flashlex outbox resend --since`: every message this thing sent at or after `since` goes
   * again, under its message id (a FlashLex hub stores each id once, while it keeps the message),
   * for a hub restored from a backup made before they came. `since` is a Date or Unix ms (not
   * seconds). Resolves to the ids, in `changed`; rejects with a usage error (64) for a time that
   * is not one (NaN, before 1970).
   */
  resendOutbox(since: Date | number): Promise<OutboxChange> {
    const sentSince = since instanceof Date ? since.getTime() : since;
    return this.use((access) => access.resendOutbox(sentSince), { existingData: true });
  }

  /** Like `flashlex outbox drop`: deletes messages from the outbox, whatever their state. */
  dropOutbox(messageIds: readonly string[]): Promise<OutboxChange> {
    return this.use((access) => access.dropOutbox(messageIds), { existingData: true });
  }

  /** Later calls reject; calls in flight finish (the database closes after the last). */
  close(): void {
    this.closed = true;
  }

  /**
   * Under Node (armv7) a call found the database held by another process: most often a `serve`
   * started while these calls had it open (a collect lets go of it during a slow attempt). Runs
   * `work` through that serve's socket; without one, throws `locked` as it is (75).
   */
  private async throughServeStartedMeanwhile<T>(work: (access: ThingAccess) => Promise<T>, locked: DatabaseLockedError): Promise<T> {
    const serve = await runningServeAccess(this.thingConfig.dataDir).catch(() => undefined);
    if (!serve) throw toFlashlexError(locked);
    try {
      return await work(serve);
    } catch (err) {
      throw toFlashlexError(err);
    } finally {
      serve.close();
    }
  }

  /**
   * Runs `work` with the thing's data: serve's socket when serve runs, else the database, opened
   * for the calls in flight and closed after the last. Holding the file no longer than that
   * matters under Node, whose WebAssembly SQLite sees no POSIX locks: while it has the file open,
   * a native SQLite (a `serve` started meanwhile) must not write it, and refuses to.
   */
  private async use<T>(work: (access: ThingAccess) => Promise<T>, { existingData = false } = {}): Promise<T> {
    if (this.closed) throw new InternalFlashlexError("FlashlexSDK: used after close()", "usage");
    if (this.dataGiven) {
      try {
        checkDataDirectory(this.thingConfig.dataDir, { flag: "data", existing: existingData });
      } catch (err) {
        throw toFlashlexError(err);
      }
    }
    // reading or changing what is stored without a serve never makes the database (databaseState)
    let state: "there" | "not yet" = "there";
    try {
      if (existingData && !(await serveListens(this.thingConfig.dataDir)))
        state = databaseState(this.thingConfig.paths.database, { flag: "data", legacy: legacyStoreOf(this.thingConfig) });
    } catch (err) {
      throw toFlashlexError(err);
    }
    if (state === "not yet") return work(withCheckedArguments(NO_DATABASE_YET));
    let shared = this.shared;
    if (!shared) {
      // a serve restart under a call goes on through the next serve or the file (resuming.ts)
      const open = () => openThingAccess(this.thingConfig, this.log);
      const access = this.lastClose.then(async () => resumingAccess(await open(), open));
      shared = this.shared = { users: 0, access };
    }
    shared.users++;
    try {
      let access: ThingAccess;
      try {
        access = await shared.access;
      } catch (err) {
        throw toFlashlexError(err);
      }
      try {
        return await work(access);
      } catch (err) {
        if (access.via === "database" && err instanceof DatabaseLockedError) return await this.throughServeStartedMeanwhile(work, err);
        // (a serve that stopped mid-call is already one, naming its socket: local/client.ts)
        throw toFlashlexError(err);
      }
    } finally {
      if (--shared.users === 0) {
        if (this.shared === shared) this.shared = undefined;
        this.lastClose = shared.access.then(
          (access) => access.close(),
          () => {},
        );
        await this.lastClose;
      }
    }
  }
}

/**
 * `open`'s arguments, before anything is read: a location object whose `config` is a path, and
 * `data`/`keys` paths when given; options an object whose `log`, when given, has a Logger's
 * methods. Throws UsageError (64) naming the argument.
 */
function checkOpenArguments(location: unknown, options: unknown): void {
  const example = 'FlashlexSDK.open({ config: "/home/pi/thing/config.yml" })';
  if (location === null || typeof location !== "object" || Array.isArray(location)) {
    throw new InternalFlashlexError(
      `FlashlexSDK.open: give the thing's files as an object, e.g. ${example}; got ${location === null ? "null" : typeof location}`,
      "usage",
    );
  }
  // a name it does not know is never read as absent: `dataDir`, as `sdk.config` names it, left
  // the SDK on the default data/ (another outbox and store than its serve's)
  const unknown = Object.keys(location).find((key) => !["config", "data", "keys"].includes(key));
  if (unknown !== undefined) {
    const hint = unknown === "dataDir" ? " (the data directory is `data`)" : unknown === "keysDir" ? " (the keys directory is `keys`)" : "";
    throw new InternalFlashlexError(`FlashlexSDK.open: no option ${JSON.stringify(unknown.slice(0, 60))}${hint}; it takes config, data and keys`, "usage");
  }
  const { config, data, keys } = location as Record<string, unknown>;
  if (typeof config !== "string" || !config.trim()) {
    throw new InternalFlashlexError(
      `FlashlexSDK.open: config must be the path of the thing's config.yml, e.g. ${example}; got ${config === null ? "null" : typeof config}`,
      "usage",
    );
  }
  for (const [name, value] of [
    ["data", data],
    ["keys", keys],
  ] as const) {
    if (value !== undefined && (typeof value !== "string" || !value.trim())) {
      throw new InternalFlashlexError(`FlashlexSDK.open: ${name} must be a directory path when given, not ${kindOf(value)}`, "usage");
    }
  }
  if (options === undefined) return;
  if (options === null || typeof options !== "object" || Array.isArray(options))
    throw new InternalFlashlexError(`FlashlexSDK.open: options must be an object such as {log}, not ${kindOf(options)}`, "usage");
  const unknownOption = Object.keys(options).find((key) => key !== "log");
  if (unknownOption !== undefined)
    throw new InternalFlashlexError(`FlashlexSDK.open: no option ${JSON.stringify(unknownOption.slice(0, 60))} in options; it takes log`, "usage");
  const log = (options as { log?: unknown }).log;
  if (log !== undefined && !["debug", "info", "warn", "error", "child"].every((m) => typeof (log as Record<string, unknown> | null)?.[m] === "function")) {
    throw new InternalFlashlexError("FlashlexSDK.open: options.log must have debug, info, warn, error and child methods", "usage");
  }
}

/**
 * Each public type must stay equal to the internal one it stands for: when a field is added or
 * changes there, this fails to typecheck (`bun run build:sdk` runs tsc over this file), and the
 * public declaration above is updated on purpose.
 */
// identical, not just mutually assignable: an added optional field counts too
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type AllHold<T extends readonly true[]> = T;
// not exported: the shipped index.d.ts leaves it (and the internal imports it names) out
// biome-ignore lint/correctness/noUnusedVariables: a check the compiler runs, never used as a value
type PublicTypesMatch = AllHold<
  [
    Same<ConfigLocation, InternalConfigLocation>,
    Same<IngressMessage, store.IngressMessage>,
    Same<IngressQuery, store.IngressQuery>,
    Same<OutboxVia, store.OutboxVia>,
    Same<OutboxEntry, store.OutboxEntry>,
    Same<OutboxChange, store.OutboxChange>,
    Same<OutboxState, InternalOutboxState>,
    Same<CollectResult, InternalCollectResult>,
    Same<Logger, InternalLogger>,
    Same<ErrorKind, InternalErrorKind>,
  ]
>;

/** What a wrong argument is, for the message refusing it: `null` and arrays by name, not as typeof's "object". */
function kindOf(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}
