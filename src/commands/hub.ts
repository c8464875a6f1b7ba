/**
 * `flashlex hub ...`: thin glue between flags and src/hub. Every command returns its exit code,
 * prints results on stdout and a one-line error on stderr; nothing here calls process.exit.
 *
 * `hubCommandTable` lists every command with its options for main.ts. cac matches one word per
 * command, so main.ts registers `hub [...words]` once and dispatches with `matchHubCommand`.
 */
import { chmodSync, copyFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { ExitCode, FlashlexError, InputError, UsageError } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { thingJson } from "../hub/http/routes.ts";
import { openArchive, writeArchiveFile } from "../hub/messages/archive.ts";
import { isoSeconds } from "../shared/time.ts";
import { defaultHubDir, openHubHome, type HubHome } from "../hub/home/home.ts";
import { initHub } from "../hub/home/init.ts";
import { openHubStore, thingStatus, type HubStore, type MessageType, type ThingRecord } from "../hub/store/hub-store.ts";
import { localRequest, withCliToken } from "../hub/http/local-client.ts";
import { writeMosquittoFiles } from "../hub/broker/mosquitto-files.ts";
import { createThing, findThing, readDistribution, revokeThing } from "../hub/things/provision.ts";
import { thingTopics } from "../protocol/topics.ts";
import { hubCrlPath, writeRevocationLists } from "../hub/things/revocation.ts";
import { serveHub } from "../hub/service.ts";
import { rotateOperatorToken } from "../hub/home/tokens.ts";
import { THING_KEY_TYPES } from "../crypto/keys.ts";
import { untilSignal } from "./common.ts";
import { parseTime, readDocument } from "./input.ts";
import { MAX_JSON_DEPTH, parseJsonDocument } from "../protocol/limits.ts";

type Options = Record<string, unknown>;

export interface HubOptionSpec {
  /** cac syntax, e.g. "-o, --output <file>" */
  flags: string;
  description: string;
  default?: unknown;
}

export interface HubCommandSpec {
  /** the words after `flashlex`, e.g. "hub thing create" */
  name: string;
  /** positional arguments in cac syntax, e.g. "<thing>"; empty when none */
  args: string;
  description: string;
  options: HubOptionSpec[];
  /** `args` are the positional values after the command words; returns the exit code */
  run(args: string[], options: Options): Promise<number>;
}

const DIR_OPTION: HubOptionSpec = { flags: "--dir <dir>", description: "the hub home (default: $FLASHLEX_HUB_DIR or ~/.flashlex-hub)" };
const JSON_OPTION: HubOptionSpec = { flags: "--json", description: "print JSON instead of text" };

// ---------------------------------------------------------------------------------------------
// option helpers: cac hands over strings, numbers (it converts numeric values) or arrays (repeats)

function str(value: unknown): string | undefined {
  if (Array.isArray(value)) value = value[value.length - 1];
  return value === undefined || value === null || value === "" ? undefined : String(value);
}

function list(value: unknown): string[] {
  const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return values.flatMap((v) => String(v).split(",")).map((v) => v.trim()).filter(Boolean);
}

function port(value: unknown, flag: string): number | undefined {
  const text = str(value);
  if (text === undefined) return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw new UsageError(`${flag} must be a port number (1-65535), not ${text}`);
  return Number(text);
}

function hubDir(options: Options): string {
  return resolve(str(options.dir) ?? defaultHubDir());
}

function required(args: string[], what: string): string {
  const value = args[0];
  if (!value) throw new UsageError(`missing ${what}`);
  return value;
}

/** Opens the home and its database for the length of `fn`. */
async function withHub<T>(options: Options, fn: (home: HubHome, store: HubStore) => Promise<T>): Promise<T> {
  const home = openHubHome(hubDir(options));
  const store = openHubStore(home.paths.database);
  try {
    return await fn(home, store);
  } finally {
    await store.close();
  }
}

async function thingOrFail(home: HubHome, store: HubStore, ref: string): Promise<ThingRecord> {
  const thing = await findThing(home, store, ref);
  if (!thing) throw new InputError(`no thing ${JSON.stringify(ref)} (give its name, typed name or id; see \`flashlex hub thing list\`)`);
  return thing;
}

// ---------------------------------------------------------------------------------------------
// commands

export async function hubInit(options: Options): Promise<number> {
  const dir = hubDir(options);
  const { home, token } = await initHub({
    dir,
    names: list(options.name),
    apiUrl: str(options.apiUrl),
    brokerHost: str(options.brokerHost),
    brokerPort: port(options.brokerPort, "--broker-port"),
    env: str(options.env),
  });
  const s = home.settings;
  if (options.json) {
    console.log(JSON.stringify({ dir, ownerId: s.ownerId, env: s.env, apiUrl: s.api.publicUrl, broker: `${s.broker.host}:${s.broker.port}`, names: s.broker.names, token }));
    return ExitCode.OK;
  }
  console.log(`hub created in ${dir}`);
  console.log(`owner id:   ${s.ownerId} (thing names start with ${s.ownerId.slice(0, 8)}-)`);
  console.log(`api:        ${s.api.publicUrl}/${s.env}/v1 (listening on ${s.api.host}:${s.api.port})`);
  console.log(`broker:     ${s.broker.host}:${s.broker.port} (certificate for ${s.broker.names.join(", ")})`);
  console.log("");
  console.log("operator access token (shown once; the hub keeps only its hash; `flashlex hub token rotate` makes a new one):");
  console.log(token);
  console.log("");
  if (!str(options.apiUrl) || list(options.name).length === 0) {
    console.log("note: things on other machines need an address they can reach: use --name HOST and --api-url http://HOST:8080");
  }
  console.log(`next: flashlex hub thing create NAME --dir ${dir}   and   flashlex hub serve --dir ${dir}`);
  return ExitCode.OK;
}

export function hubThingCreate(args: string[], options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const keyType = str(options.keyType) ?? "rsa";
    if (!(THING_KEY_TYPES as readonly string[]).includes(keyType)) throw new UsageError(`--key-type must be ${THING_KEY_TYPES.join(" or ")}, not ${keyType}`);
    const { thing, distribution } = await createThing(home, store, required(args, "the thing name"), Date.now, { keyType });
    const output = str(options.output);
    if (output) {
      copyFileSync(distribution, output);
      chmodSync(output, 0o600); // it holds the thing's private key
    }
    if (options.json) {
      console.log(JSON.stringify({ ...thingJson(thing, home.settings.env), distributionFile: output ?? distribution }));
      return ExitCode.OK;
    }
    const topics = thingTopics(thing.name);
    console.log(`created thing ${thing.name} (id ${thing.id}, ${keyType === "ec" ? "EC P-256 key, ES256 tokens" : "RSA-2048 key, RS256 tokens"})`);
    console.log(`distribution: ${output ?? distribution}`);
    console.log(`topics:       ${topics.ingress} (ingress), ${topics.pubsub} (pubsub), ${topics.egress} (egress)`);
    console.log(`next: copy the zip and the flashlex binary to the thing, unzip, then:`);
    console.log(`  ./flashlex bootstrap -c ${thing.name}/config.yml -k ${thing.name}/keys -d ${thing.name}/data`);
    return ExitCode.OK;
  })
}

export function hubThingList(options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const things = await store.listThings();
    if (options.json) {
      console.log(JSON.stringify(things.map((t) => thingJson(t, home.settings.env))));
      return ExitCode.OK;
    }
    const rows = [
      ["NAME", "ID", "STATUS", "LAST SEEN"],
      ...things.map((t) => [t.name, t.id, thingStatus(t), t.lastSeenAt === null ? "never" : isoSeconds(t.lastSeenAt)]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) console.log(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "));
    if (things.length === 0) console.log("(no things yet: flashlex hub thing create NAME)");
    return ExitCode.OK;
  })
}

export function hubThingDist(args: string[], options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const thing = await thingOrFail(home, store, required(args, "the thing"));
    const zip = thing.revokedAt === null ? readDistribution(home, thing.id) : undefined;
    if (!zip) throw new InputError(`${thing.name} has no distribution (it was revoked)`);
    const output = resolve(str(options.output) ?? `${thing.name}.zip`);
    writeFileSync(output, zip, { mode: 0o600 });
    chmodSync(output, 0o600);
    console.log(output);
    return ExitCode.OK;
  })
}

export function hubThingRevoke(args: string[], options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const thing = await thingOrFail(home, store, required(args, "the thing"));
    const changed = await revokeThing(home, store, thing);
    const crls = await writeRevocationLists(home, store);
    if (!changed) {
      console.log(`${thing.name} was already revoked`);
      return ExitCode.OK;
    }
    console.log(`revoked ${thing.name} (id ${thing.id}): it can no longer connect or collect, and its distribution was deleted`);
    console.log("a running `flashlex hub serve` with the embedded broker disconnects it within a few seconds");
    const external = crls.filter((f) => f !== hubCrlPath(home));
    if (external.length > 0) console.log(`CRL updated: ${external.join(", ")}; reload the broker (systemctl reload mosquitto)`);
    return ExitCode.OK;
  })
}

export async function hubServe(options: Options): Promise<number> {
  const log = createLogger();
  const handle = await serveHub({ dir: hubDir(options), broker: str(options.broker), log });
  const signal = await untilSignal();
  log.info("hub.stopping", { signal });
  // A stuck close must not keep systemd waiting for its own stop timeout.
  const deadline = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5000).unref?.());
  if ((await Promise.race([handle.close(), deadline])) === "timeout") log.warn("hub.stop_timeout", { note: "exiting anyway" });
  return ExitCode.OK;
}

export function hubSend(args: string[], options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const thing = await thingOrFail(home, store, required(args, "the thing"));
    const file = str(options.file);
    const limit = home.settings.api.payloadLimitBytes;
    const source = file ?? "stdin";
    const message = parseJsonDocument(await readDocument(file, limit), { maxBytes: limit, maxDepth: MAX_JSON_DEPTH, source });
    // The publish body wraps the message: {"message": ...} must fit the hub's limit too.
    const bodyBytes = Buffer.byteLength(JSON.stringify({ message }));
    if (bodyBytes > limit) throw new InputError(`${source}: the message is ${bodyBytes} bytes as {"message": ...}, over the hub's ${limit}-byte limit`);
    const response = await withCliToken(store, (token) => localRequest<{ flmessagespk: string; online: boolean }>(home, token, "POST", `/things/${thing.id}/publish`, { message }));
    if (response.status !== 200 || !response.body) {
      const why = response.body?.messages[0]?.value ?? `HTTP ${response.status}`;
      throw new FlashlexError(`the hub refused the message: ${why}`, response.status === 503 ? ExitCode.UNAVAILABLE : response.status >= 500 ? ExitCode.SOFTWARE : ExitCode.DATA);
    }
    if (options.json) console.log(JSON.stringify(response.body));
    else {
      const { flmessagespk, online } = response.body.result;
      // `online: false` comes only from the embedded broker, which keeps the message until the thing acknowledges it.
      const offline = " (the thing is not connected now; the hub keeps the message until the thing has it)";
      console.log(`sent to ingress/${thing.name} as ${flmessagespk}${online === false ? offline : ""}`);
    }
    return ExitCode.OK;
  })
}

export function hubExport(args: string[], options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const thing = await thingOrFail(home, store, required(args, "the thing"));
    const startts = parseTime(str(options.since), "--since", false);
    const endts = parseTime(str(options.until), "--until", true);
    const type = str(options.type);
    if (type !== undefined && type !== "egress" && type !== "ingress") throw new UsageError("--type must be egress or ingress");
    const archive = await openArchive(store, {
      thingId: thing.id,
      ownerId: home.settings.ownerId,
      query: { startts, endts, messagetype: type as MessageType | undefined },
      at: new Date(),
      payloadLimitBytes: home.settings.api.payloadLimitBytes,
    });
    const output = resolve(str(options.output) ?? archive.fileName);
    const written = await writeArchiveFile(archive, output);
    console.log(`${output}: ${written} messages`);
    return ExitCode.OK;
  })
}

export function hubMosquittoConfig(options: Options): Promise<number> {
  return withHub(options, async (home, store) => {
    const out = str(options.out);
    if (!out) throw new UsageError("--out DIR is required (Mosquitto must be able to read it: not inside the 0700 hub home)");
    const persistence = str(options.persistence);
    const files = await writeMosquittoFiles(home, store, {
      dir: resolve(out),
      port: port(options.port, "--port") ?? home.settings.broker.port,
      bindAddress: str(options.bind) ?? "0.0.0.0",
      persistenceDir: persistence ? resolve(persistence) : undefined,
    });
    console.log(`wrote ${files.config}, mosquitto.acl, root-ca-cert.pem, broker-cert.pem, broker-key.pem, crl.pem`);
    console.log(`the broker key must be readable by Mosquitto's user: sudo chown root:mosquitto ${files.brokerKey}`);
    console.log(`run: mosquitto -c ${files.config}   then: flashlex hub serve --broker mqtts://${home.settings.broker.host}:${home.settings.broker.port}`);
    return ExitCode.OK;
  });
}

export function hubTokenRotate(options: Options): Promise<number> {
  return withHub(options, async (_home, store) => {
    const token = await rotateOperatorToken(store);
    console.log("new operator access token (shown once; the old one no longer works):");
    console.log(token);
    return ExitCode.OK;
  })
}

// ---------------------------------------------------------------------------------------------


export const hubCommandTable: HubCommandSpec[] = [
  {
    name: "hub init",
    args: "",
    description: "Create a hub home: CA, broker certificate, hub.yml, database and the operator access token",
    options: [
      DIR_OPTION,
      { flags: "--name <name>", description: "DNS name or IP address for the broker certificate; repeat or comma-separate (default: localhost, 127.0.0.1, the hostname)" },
      { flags: "--api-url <url>", description: "the API URL things use (default: http://127.0.0.1:8080; https:// makes the hub serve TLS)" },
      { flags: "--broker-host <host>", description: "the broker host things connect to (default: the first --name, else localhost)" },
      { flags: "--broker-port <port>", description: "the broker port (default: 8883)" },
      { flags: "--env <env>", description: "the API's {env} path segment (default: dev)" },
      JSON_OPTION,
    ],
    run: (_args, o) => hubInit(o),
  },
  {
    name: "hub thing create",
    args: "<name>",
    description: "Provision a thing: id, key pair, certificate, topics and its distribution zip",
    options: [
      DIR_OPTION,
      { flags: "--key-type <type>", description: "rsa (default: RSA-2048, RS256 tokens) or ec (P-256, ES256 tokens)" },
      { flags: "-o, --output <file>", description: "also write the distribution zip here (mode 0600)" },
      JSON_OPTION,
    ],
    run: hubThingCreate,
  },
  {
    name: "hub thing list",
    args: "",
    description: "List things with their status (created, verified, revoked) and when they were last seen",
    options: [DIR_OPTION, JSON_OPTION],
    run: (_args, o) => hubThingList(o),
  },
  {
    name: "hub thing dist",
    args: "<thing>",
    description: "Write a thing's distribution zip again",
    options: [DIR_OPTION, { flags: "-o, --output <file>", description: "where to write it (default: ./<name>.zip)" }],
    run: hubThingDist,
  },
  {
    name: "hub thing revoke",
    args: "<thing>",
    description: "Stop a thing from connecting and collecting; deletes its distribution",
    options: [DIR_OPTION],
    run: hubThingRevoke,
  },
  {
    name: "hub serve",
    args: "",
    description: "Run the hub: MQTT broker, HTTP API and database in one process",
    options: [DIR_OPTION, { flags: "--broker <broker>", description: "embedded, or an external broker mqtts://HOST:PORT (the hub logs in with its client certificate)", default: "embedded" }],
    run: (_args, o) => hubServe(o),
  },
  {
    name: "hub send",
    args: "<thing>",
    description: 'Send the JSON document on stdin to a thing, as {"message": <document>} on its ingress topic (needs a running hub)',
    options: [DIR_OPTION, { flags: "-f, --file <file>", description: "read the document from this file instead of stdin" }, JSON_OPTION],
    run: hubSend,
  },
  {
    name: "hub export",
    args: "<thing>",
    description: "Write a thing's messages to a zip, one <flmessagespk>.json each (the old cloud's export format)",
    options: [
      DIR_OPTION,
      { flags: "--since <time>", description: "from this time: Unix seconds or an ISO date/date-time" },
      { flags: "--until <time>", description: "up to this time, inclusive (a bare date means the end of that day)" },
      { flags: "--type <type>", description: "only egress or only ingress messages (default: both)" },
      { flags: "-o, --output <file>", description: "the zip file (default: ./<thing id>_messages_<date>.zip)" },
    ],
    run: hubExport,
  },
  {
    name: "hub mosquitto-config",
    args: "",
    description: "Write a Mosquitto configuration, ACL, certificates and CRL for running the hub against an external broker",
    options: [
      DIR_OPTION,
      { flags: "--out <dir>", description: "the directory to write (required; Mosquitto must be able to read it)" },
      { flags: "--port <port>", description: "the listener port (default: hub.yml broker.port)" },
      { flags: "--bind <address>", description: "the listener address (default: 0.0.0.0)" },
      { flags: "--persistence <dir>", description: "enable Mosquitto persistence in this directory" },
    ],
    run: (_args, o) => hubMosquittoConfig(o),
  },
  {
    name: "hub token rotate",
    args: "",
    description: "Make a new operator access token; the old one stops working at once",
    options: [DIR_OPTION],
    run: (_args, o) => hubTokenRotate(o),
  },
];

/**
 * Finds the command whose words start `words` (the arguments after `flashlex`), longest first,
 * and returns it with the remaining words as its positional arguments.
 */
export function matchHubCommand(words: readonly string[]): { command: HubCommandSpec; args: string[] } | undefined {
  const candidates = [...hubCommandTable].sort((a, b) => b.name.split(" ").length - a.name.split(" ").length);
  for (const command of candidates) {
    const parts = command.name.split(" ");
    if (parts.every((p, i) => words[i] === p)) return { command, args: words.slice(parts.length).map(String) };
  }
  return undefined;
}

/**
 * Every option of every hub command, once each (same flags, first description wins), for a
 * single cac command `hub [...words]` that dispatches with `matchHubCommand`. No defaults here:
 * a default on the shared command would reach every subcommand.
 */
export function hubOptionUnion(): HubOptionSpec[] {
  const seen = new Map<string, HubOptionSpec>();
  for (const command of hubCommandTable) {
    for (const option of command.options) if (!seen.has(option.flags)) seen.set(option.flags, { flags: option.flags, description: option.description });
  }
  return [...seen.values()];
}
