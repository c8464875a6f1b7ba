import { readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { parse, parseDocument } from "yaml";
import { DEFAULT_PAYLOAD_LIMIT_BYTES } from "../../protocol/limits.ts";
import { parseDuration } from "../../shared/duration.ts";
import { ConfigError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { DNS_NAME, parseListenAddress, withinDnsLengths } from "../../shared/listen-address.ts";
import { cutGiven } from "../../shared/log.ts";
import { misspeltKey, normaliseLineBreaks, parseYamlFile, unknownKeyNote, unknownKeys, validate } from "../../shared/yaml.ts";
import { z } from "../../shared/zod.ts";
import { DATABASE_CHOICES, parseHubDatabase } from "../store/database-url.ts";

/**
 * `hub.yml`: the hub's own settings, written by `hub init` and read by every hub command. One
 * declared schema, so a hand edit that breaks it fails with the file and the key path.
 *
 * Two kinds of address live here and are kept apart on purpose: where the hub *listens*
 * (`api.host/port`, `broker.listenHost/listenPort`) and what things are *told* to use
 * (`api.publicUrl`, `broker.host/port`, written into every distribution's config.yml). Behind NAT
 * or a proxy they differ.
 */
const port = z.int().min(1).max(65535);

/** The largest `api.payloadLimitBytes`, in bytes. */
const MAX_PAYLOAD_LIMIT_BYTES = 16 * 1024 * 1024;

/**
 * What can be written into a distribution's config.yml as a plain YAML scalar, unquoted (the
 * template's rule, src/hub/things/distribution.ts): checked here, so a value that cannot go there is
 * refused by `hub init` (64) or when hub.yml is read (78), never when a thing is created.
 */
export const PLAIN_YAML_VALUE = /^[A-Za-z0-9][A-Za-z0-9._~:/@%+=[\]-]*$/;

/** True when `value` can be written unquoted into YAML and reads back as the same string (not 0, true, null...). */
export function isPlainYamlString(value: string): boolean {
  if (!PLAIN_YAML_VALUE.test(value)) return false;
  try {
    return parse(value) === value;
  } catch {
    return false;
  }
}

const YAML_WORDS = "it goes unquoted into every distribution's config.yml, where YAML must read it back as text";

const brokerHost = z
  .string()
  .min(1)
  .refine((h) => isIP(h) !== 0 || DNS_NAME.test(h), "must be a DNS name or an IP address")
  .refine(isPlainYamlString, `must not look like a number or a YAML word, nor start with ':' (${YAML_WORDS})`);

/**
 * Why `name` cannot be a name of the broker certificate, in a few words; undefined when it can: a
 * DNS name (no trailing dot, no wildcard) or an IP address, without a zone (`%eth0`) and not an
 * IPv4-mapped IPv6 address (`::ffff:10.0.0.5`, which TLS clients connecting to 10.0.0.5 do not
 * match: give the IPv4 address).
 */
export function brokerNameProblem(name: string): string | undefined {
  if (/^::ffff:/i.test(name) && isIP(name) === 6) return "an IPv4-mapped IPv6 address: give the IPv4 address itself";
  if (isIP(name) !== 0 && !name.includes("%")) return undefined;
  if (DNS_NAME.test(name)) return undefined;
  return "not a DNS name or IP address (no wildcard, trailing dot or zone)";
}

const brokerName = z.string().superRefine((name, ctx) => {
  const problem = brokerNameProblem(name);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** Where a listener binds: an address or a host name, never longer than DNS allows (the "cannot listen" refusal echoed 300 characters). */
const listenHost = z.string().min(1).refine(withinDnsLengths, "at most 253 characters, 63 between dots (an IP address or a host name)");

/** A duration setting (`90d`, `12h`, `30s`: shared/duration.ts) between `minMs` and `maxMs`; kept as written, read by `settingMs`. */
function durationSetting(minMs: number, maxMs: number, words: string) {
  // `words` for a number too (`keepFor: 365`): zod's own "expected string" does not say what to write
  return z.string(words).refine((text) => {
    const ms = parseDuration(text);
    return ms !== undefined && ms >= minMs && ms <= maxMs;
  }, words);
}

/** A duration setting in milliseconds (the schema checked it). */
export function settingMs(text: string): number {
  return parseDuration(text)!;
}

/**
 * Lifetimes of the certificates the hub issues to things that enrol or renew (docs/enrolment.md
 * says why these defaults). Things made by `hub thing create` keep their ten-year certificate
 * until they renew (the agent does so at two thirds of a lifetime, or at `hub thing rotate`).
 */
const CertificatesSchema = z.object({
  /** how long an enrolled or renewed thing certificate is valid; the agent renews at 2/3 of it */
  thingLifetime: durationSetting(10_000, 3650 * 86_400_000, "a duration from 10s to 3650d, such as 90d, 12h or 30s").default("90d"),
  /** how often a running agent asks the hub whether to renew (it learns of `hub thing rotate` then) */
  renewalCheck: durationSetting(1000, 7 * 86_400_000, "a duration from 1s to 7d, such as 15m").default("15m"),
});

/**
 * Where `hub serve` answers Prometheus's scrape (`GET /metrics`, docs/metrics.md): `HOST:PORT` or
 * `false` for no listener. Absent: DEFAULT_METRICS_LISTEN, loopback, so the metrics need no
 * secret (see docs/metrics.md for why there is no token).
 */
const METRICS_LISTEN_HINT = "must be HOST:PORT (127.0.0.1:9464, [::1]:9464), PORT (on 127.0.0.1) or false";
const metricsListen = z.preprocess(
  // a bare port is a number to YAML (`listen: 9464`): the same as "9464"
  (value) => (typeof value === "number" ? String(value) : value),
  z.union([z.literal(false), z.string().refine((text) => parseListenAddress(text) !== undefined, METRICS_LISTEN_HINT)], METRICS_LISTEN_HINT),
);

/** A hub instance name (`hub.instance`): lower-case letters, digits and dashes, at most 32. */
export const HUB_INSTANCE = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** Where the hub's metrics listen when hub.yml does not say. */
export const DEFAULT_METRICS_LISTEN = "127.0.0.1:9464";

export const HubYamlSchema = z.object({
  hub: z.object({
    /** the owner (account) id; its first 8 hex digits prefix every thing name, as in the guide */
    ownerId: z.uuid(),
    /** the `{env}` path segment of the API, and `flashlex.app.api.env` in distributions */
    env: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, - and _ only")
      .refine(isPlainYamlString, `must not look like a number or a YAML word (${YAML_WORDS})`)
      .default("dev"),
    api: z.object({
      host: listenHost.default("127.0.0.1"),
      port: port.default(8080),
      /** what things put in `flashlex.app.api.endpoint` */
      publicUrl: z
        .url({ protocol: /^https?$/ })
        .refine(isPlainYamlString, `must be a URL without spaces, quotes or '#' (${YAML_WORDS})`)
        // every distribution's config.yml and every enrolment line gets it (hub init refuses such a host)
        .refine((u) => !URL.canParse(u) || withinDnsLengths(new URL(u).hostname), "its host is longer than a DNS name may be (253 characters, 63 between dots)")
        // as the hub prints its API (.../dev/v1): every distribution and enrolment line got it twice (verify pass 28, F2)
        .refine(
          (u) => !URL.canParse(u) || !/\/v1\/*$/.test(new URL(u).pathname),
          "ends with /{env}/v1, which the hub adds itself: give the hub's address alone, such as https://HOST:PORT",
        ),
      /** serve HTTPS with the broker certificate (set false when a proxy terminates TLS) */
      tls: z.boolean().default(false),
      /** largest collect/publish body accepted, in bytes; each is held in memory whole, hence the cap */
      payloadLimitBytes: z
        .int()
        .positive()
        .max(MAX_PAYLOAD_LIMIT_BYTES, "at most 16777216 (16 MiB): every body is held in memory whole")
        .default(DEFAULT_PAYLOAD_LIMIT_BYTES),
    }),
    broker: z.object({
      /** `flashlex.thing.endpoint` in distributions: the name things connect to */
      host: brokerHost,
      /** `flashlex.thing.mqtt.port` in distributions */
      port: port.default(8883),
      listenHost: listenHost.default("0.0.0.0"),
      /** the embedded broker's port; defaults to `port` */
      listenPort: port.optional(),
      /** the names and addresses the broker certificate is issued for; one it lacks makes hub serve issue it again at start (broker-certificate.ts) */
      names: z.array(brokerName).default([]),
      /**
       * CRL files an external broker reads (Mosquitto's crlfile); `hub thing revoke` rewrites
       * each. `hub mosquitto-config` adds its own.
       */
      crlFiles: z.array(z.string()).default([]),
      /**
       * What `hub serve` runs after it rewrites the CRL files (a revocation, a renewal) so that an
       * external broker re-reads them: an argv list run without a shell, e.g.
       * `[sudo, -n, systemctl, reload, mosquitto]`. Mosquitto reads its crlfile only on SIGHUP.
       */
      reloadCommand: z.array(z.string().min(1)).min(1).optional(),
      /**
       * An external broker (Mosquitto) as mqtts://HOST:PORT (`hub mosquitto-config` writes this):
       * `hub serve` logs in to it with the hub's client certificate unless `--broker` says
       * otherwise (docs/broker.md). At most one of `external` and `rabbitmq`.
       */
      external: z.url({ protocol: /^mqtts$/ }).optional(),
      /**
       * A RabbitMQ 3.10 cluster as the broker (`hub rabbitmq-config` writes this): `hub serve`
       * then uses it unless `--broker` says otherwise (docs/scaling.md, "Broker cluster").
       */
      rabbitmq: z
        .object({
          /** each node's MQTT listener, mqtts://HOST:PORT; the hub connects to the first and fails over in turn */
          urls: z.array(z.url({ protocol: /^mqtts$/ })).min(1),
          /** each node's management API, https://HOST:PORT (closing revoked things' connections) */
          management: z.array(z.url({ protocol: /^https$/ })).min(1),
          /** where the hub answers the nodes' auth backend (rabbitmq.conf auth_http.*_path) */
          authListen: z.object({ host: z.string().min(1).default("127.0.0.1"), port }),
        })
        .optional(),
    }),
    /**
     * This hub process's name among several on one database and broker cluster (docs/scaling.md,
     * "Several hubs"): its MQTT client id is `flashlex-hub-<instance>`, so each hub has its own
     * broker session. Absent: the home's legacy `instance` file, else derived from the host name
     * and the home's real path (home/instance.ts), so a copied home gets its own.
     */
    instance: z.string().regex(HUB_INSTANCE, "1 to 32 lower-case letters, digits and dashes, starting with a letter or digit").optional(),
    /**
     * The directory, shared by every hub of a fleet, that holds what lives in files rather than the
     * database: thing distributions (`dists/`) and releases (`releases/`). Absent: the hub home.
     */
    sharedDir: z.string().min(1).optional(),
    certificates: CertificatesSchema.default({ thingLifetime: "90d", renewalCheck: "15m" }),
    /** Absent: every message is kept. */
    messages: z
      .object(
        {
          /**
           * How long `hub serve` keeps a message (messages/retention.ts): older ones are deleted,
           * but ingress its thing has not acknowledged. At least a day, so that a thing's retry of
           * a message the hub already holds still finds its id (and is not stored twice).
           * Required once `messages` is there: a misspelt key would otherwise keep every message
           * with only a warning.
           */
          keepFor: durationSetting(86_400_000, 36_500 * 86_400_000, "a duration from 1d to 36500d, such as 365d"),
        },
        "must hold keepFor: a duration from 1d to 36500d, such as 365d (without messages, every message is kept)",
      )
      .optional(),
    metrics: z
      .object({
        /** absent: DEFAULT_METRICS_LISTEN (and a busy port there is a warning, not a failure: serve.ts) */
        listen: metricsListen.optional(),
      })
      .default({}),
    /**
     * Where the hub's database is (docs/scaling.md, "Storage"): absent or `sqlite`, hub.db in the
     * hub home; a PostgreSQL URL, a served database (several hubs may share it). `--db` overrides.
     */
    database: z
      .object({
        url: z
          .string()
          .refine((url) => {
            try {
              parseHubDatabase(url, "hub.db", "hub.database.url");
              return true;
            } catch {
              return false;
            }
          }, `must be ${DATABASE_CHOICES}`)
          .optional(),
      })
      .optional(),
  }),
});

export type HubYaml = z.infer<typeof HubYamlSchema>;
export type HubSettings = HubYaml["hub"];

/** The warning's note for a key of hub.yml its schema does not know (shared/yaml.ts unknownKeyNote): "ignored", with the key it was likely meant to be. */
export function unknownHubKeyNote(key: string): string {
  return unknownKeyNote(HubYamlSchema, key);
}

/**
 * Loads and validates hub.yml (ConfigError, 78, naming the file and the key path). Keys the
 * schema does not know are ignored and listed in `unknownKeys` (`hub.colour`), for a warning,
 * except a misspelling of a key the file does not set (`hub.api.prot` and no `port`): ConfigError,
 * as the hub would otherwise listen on the default port without a word but the warning.
 */
export function loadHubSettings(file: string): { settings: HubSettings; unknownKeys: string[] } {
  const raw = parseYamlFile(file);
  // a thing's config.yml copied in as hub.yml: "hub: missing" sent the owner to write one by hand
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw) && "flashlex" in raw && !("hub" in raw)) {
    throw new ConfigError(`${file}: this is a thing's config.yml, not a hub's settings (hub.yml): run hub init for a hub home, or give its --dir`);
  }
  const settings = validate(HubYamlSchema, raw, file).hub;
  const unknown = unknownKeys(HubYamlSchema, raw);
  const misspelt = misspeltKey(HubYamlSchema, raw, unknown);
  if (misspelt) {
    throw new ConfigError(
      `${file}: ${cutGiven(misspelt.key)} is not a setting; did you mean ${misspelt.meant}? It is not set, so its default would be used in place of what you wrote: correct the key`,
    );
  }
  return { settings, unknownKeys: unknown };
}

/** The guide's short prefix: `ecd13b11` of the owner id `ecd13b11-6d91-...`. */
export function ownerPrefix(settings: Pick<HubSettings, "ownerId">): string {
  return settings.ownerId.slice(0, 8).toLowerCase();
}

/** A file's permission bits: hub.yml stays 0600 when `hub init --db` made it so (the URL holds a password). */
function modeOf(file: string): number {
  return statSync(file).mode & 0o777;
}

/** Adds a CRL file to `broker.crlFiles`, keeping the file's comments and layout. */
export function addCrlFile(configFile: string, crlFile: string): void {
  const doc = parseDocument(normaliseLineBreaks(readFileSync(configFile, "utf8")));
  const current = (doc.getIn(["hub", "broker", "crlFiles"]) as { toJSON(): unknown } | undefined)?.toJSON();
  const list = Array.isArray(current) ? (current as string[]) : [];
  if (list.includes(crlFile)) return;
  doc.setIn(["hub", "broker", "crlFiles"], [...list, crlFile]);
  writeFileAtomicallySync(configFile, doc.toString(), modeOf(configFile));
}

/**
 * Points `hub serve` at the broker a `hub ...-config` command wrote for, in hub.yml, keeping the
 * file's comments and layout: `broker.rabbitmq` (a cluster) or `broker.external` (Mosquitto's
 * mqtts:// URL); the other key is removed, so hub.yml names one broker.
 */
export function setBrokerSettings(configFile: string, broker: { rabbitmq: NonNullable<HubSettings["broker"]["rabbitmq"]> } | { external: string }): void {
  const doc = parseDocument(normaliseLineBreaks(readFileSync(configFile, "utf8")));
  const [set, remove] = "rabbitmq" in broker ? (["rabbitmq", "external"] as const) : (["external", "rabbitmq"] as const);
  doc.setIn(["hub", "broker", set], "rabbitmq" in broker ? broker.rabbitmq : broker.external);
  doc.deleteIn(["hub", "broker", remove]);
  writeFileAtomicallySync(configFile, doc.toString(), modeOf(configFile));
}
