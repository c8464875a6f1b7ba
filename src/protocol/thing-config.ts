import { parseListenAddress } from "../shared/listen-address.ts";
import { z } from "../shared/zod.ts";
import { COLLECT_TOPIC } from "./topics.ts";

/**
 * The guide's `config.yml`, as one declared schema. Every key the guide's file has is accepted
 * with its meaning; the ones a hand-edited file may lack get the guide's value as default.
 * Times in the `mqtt` block are seconds, as in the Python SDK.
 */
const seconds = z.number().nonnegative();
/**
 * A topic the agent subscribes or publishes to as it is: a topic name, not a filter (MQTT 3.1.1
 * §4.7): no `+`/`#` wildcards (the hub grants a thing its own topics only, so a filter is refused
 * by the broker and the agent would reconnect in vain), no NUL, at most 65,535 bytes of UTF-8.
 */
const topicName = z
  .string()
  .min(1)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what MQTT forbids in a topic name (§4.7.3)
  .refine((t) => !/[+#\u0000]/.test(t), "must be a topic name without the wildcards + and # (or NUL), e.g. ingress/<thing name>")
  .refine((t) => Buffer.byteLength(t) <= 65535, "is longer than MQTT's 65,535 bytes");
const topic = z.object({ topic: topicName });
/** The words PyYAML (YAML 1.1) read as booleans that YAML 1.2, which the agent reads, leaves as strings. */
const YAML11_BOOLEANS: Readonly<Record<string, boolean>> = Object.fromEntries([
  ...["yes", "Yes", "YES", "on", "On", "ON"].map((word) => [word, true]),
  ...["no", "No", "NO", "off", "Off", "OFF"].map((word) => [word, false]),
]);
/** A boolean as the Python SDK read it: an old file's `useWebsocket: no` means false, as it did. */
const yaml11Boolean = z.preprocess(
  (value) => (typeof value === "string" && Object.hasOwn(YAML11_BOOLEANS, value) ? YAML11_BOOLEANS[value] : value),
  z.boolean(),
);

export const ThingYamlSchema = z.object({
  flashlex: z.object({
    app: z.object({
      api: z
        .object({
          endpoint: z.url({ protocol: /^https?$/ }),
          env: z.string().regex(/^[A-Za-z0-9_-]+$/, "letters, digits, - and _ only"),
        })
        // The hub prints its API as `.../dev/v1` (hub init, enroll --hub): pasted here, every
        // request went to .../dev/v1/dev/v1/... and was queued for good on the 404 (new-user pass 23, F7).
        .superRefine((api, ctx) => {
          if (!URL.canParse(api.endpoint)) return;
          const url = new URL(api.endpoint);
          const path = url.pathname.replace(/\/+$/, "");
          // any env's (the hub's may have changed): `/v1` ends no endpoint the agent can use
          const suffix = /(\/[^/]+)?\/v1$/.exec(path)?.[0];
          if (suffix) {
            ctx.addIssue({
              code: "custom",
              path: ["endpoint"],
              message: `ends with ${suffix}, which the agent adds itself from api.env: give the hub's address alone, ${url.origin}${path.slice(0, -suffix.length)}`,
            });
          }
        }),
      callback: z.enum(["persistent", "basicPubsub", "test"]).default("persistent"),
      thread: z.enum(["subscribe", "basicPubsub", "test"]).default("subscribe"),
      message: z.string().default("This is a really basic message."),
      loopCount: z.int().positive().optional(),
      db: z
        .object({
          subscriptionData: z
            .string()
            // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL cannot be in a file name
            .regex(/^(?!\.\.?$)[^/\u0000]+$/, "a file name, without a directory")
            .default("subscription.json"),
          /**
           * Retention of acknowledged messages and delivered outbox rows, seconds; 0 or below
           * keeps them (the Python SDK expired nothing then).
           */
          expireSeconds: z.int().default(3600),
        })
        .prefault({}),
    }),
    /** what made the file (informational): an empty `commitSha:` or one YAML reads as a number is as good */
    dist: z
      .object({ commitSha: z.preprocess((value) => (value === null ? undefined : typeof value === "number" ? String(value) : value), z.string().optional()) })
      .partial()
      .nullish(),
    /**
     * Signed self-update (docs/updates.md). Absent (distributions made before it): serve never
     * updates itself. `publicKey` pins the hub's release-signing key; the times are seconds.
     */
    update: z
      .object({
        publicKey: z.string().regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, "ed25519: and the 32-byte key in base64 (`flashlex hub release key`)"),
        /** how often serve asks the hub for an update */
        checkSeconds: z.number().min(1).max(86_400).default(600),
        /** how long a new version has, from its start, to connect and report healthy; past it the previous binary comes back */
        healthySeconds: z.number().min(5).max(3600).default(120),
      })
      .optional(),
    /**
     * The agent's local metrics endpoint (docs/metrics.md), off unless set: `listen` is HOST:PORT
     * or a bare PORT (127.0.0.1). `serve --metrics` overrides it.
     */
    metrics: z
      .object({
        // a bare port is a number to YAML (`listen: 9465`): the same as "9465"
        listen: z.preprocess(
          (value) => (typeof value === "number" ? String(value) : value),
          z
            .string("HOST:PORT or PORT (127.0.0.1:9465, 9465)")
            .refine((text) => parseListenAddress(text) !== undefined, "HOST:PORT or PORT (127.0.0.1:9465, 9465)"),
        ),
      })
      .optional(),
    thing: z.object({
      id: z.uuid(),
      name: z.string().regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, '.', '-' and '_' only"),
      endpoint: z.string().min(1),
      keys: z.object({
        rootCA: z.string().min(1),
        cert: z.string().min(1),
        privateKey: z.string().min(1),
        publicKey: z.string().min(1).optional(),
      }),
      mqtt: z.object({
        pubsub: topic.optional(),
        ingress: topic,
        egress: topic.prefault({ topic: COLLECT_TOPIC }),
        useWebsocket: yaml11Boolean.default(false),
        port: z.int().min(1).max(65535).default(8883),
        autoReconnectBackoffTime: z
          .object({
            baseReconnectQuietTimeSecond: seconds.default(1),
            maxReconnectQuietTimeSecond: seconds.default(32),
            stableConnectionTimeSecond: seconds.default(20),
          })
          .prefault({}),
        /** -1: unbounded, 0: disabled, N: at most N messages wait in the outbox */
        offlinePublishQueueing: z.int().min(-1).default(-1),
        /** how many queued messages per second are sent after a reconnect (Hz) */
        drainingFrequency: z.number().positive().default(2),
        /**
         * MQTT keep alive (3.1.1 §3.1.2.10), seconds: a PINGREQ after this long without traffic, and
         * a connection given up after 1.5 times it without an answer. Lower it where a NAT or a
         * cellular link forgets an idle connection sooner (the old AWS SDK's connect() argument).
         */
        keepAliveIntervalSecond: z.int().min(5).max(65535).default(60),
        connectDisconnectTimeout: seconds.default(10),
        mqttOperationTimeout: seconds.default(5),
      }),
    }),
  }),
});

export type ThingYaml = z.infer<typeof ThingYamlSchema>;
