import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { loadHubSettings, unknownHubKeyNote } from "../../src/hub/home/settings.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { loadYamlFile } from "../../src/shared/yaml.ts";
import { CONFIG_CACHE_NAME, databaseFileName, loadThingConfig, unknownConfigKeyNote } from "../../src/thing/settings.ts";

const GUIDE = join(import.meta.dir, "../fixtures/guide-config.yml");
const dir = mkdtempSync(join(tmpdir(), "flashlex-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a variant of the guide's config, with `edit` applied to its text. */
function variant(name: string, edit: (text: string) => string): string {
  const file = join(dir, name);
  writeFileSync(file, edit(readFileSync(GUIDE, "utf8")));
  return file;
}

function configErrorOf(file: string): ConfigError {
  try {
    loadThingConfig({ config: file });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect(exitCodeOf(err)).toBe(ExitCode.CONFIG);
    return err as ConfigError;
  }
  throw new Error(`${file} loaded, but should not have`);
}

describe("the guide's config.yml", () => {
  test("loads unchanged, with its values and meanings", () => {
    const config = loadThingConfig({ config: GUIDE });
    expect(config.unknownKeys).toEqual([]);
    expect(config.yaml.thing.name).toBe("ecd13b11-mything");
    expect(config.yaml.thing.mqtt.port).toBe(8883);
    expect(config.yaml.app.callback).toBe("persistent");
    expect(config.yaml.app.thread).toBe("subscribe");
    expect(config.yaml.app.db.expireSeconds).toBe(60);
    expect(config.yaml.thing.mqtt.autoReconnectBackoffTime.maxReconnectQuietTimeSecond).toBe(30);
    expect(config.yaml.thing.mqtt.drainingFrequency).toBe(2);
  });

  test("-d defaults to data/ beside the config, -k to the config's directory", () => {
    const config = loadThingConfig({ config: GUIDE });
    const fixtures = join(import.meta.dir, "../fixtures");
    expect(config.dataDir).toBe(join(fixtures, "data"));
    expect(config.keysDir).toBe(fixtures);
    expect(config.paths.privateKey).toBe(join(fixtures, "ecd13b11-mything-keypair-private.pem"));
    expect(config.paths.database).toBe(join(fixtures, "data", "subscription.db"));
  });

  test("-d and -k override the defaults", () => {
    const config = loadThingConfig({ config: GUIDE, data: "/var/lib/flashlex", keys: "/etc/flashlex/keys" });
    expect(config.paths.database).toBe("/var/lib/flashlex/subscription.db");
    expect(config.paths.rootCA).toBe("/etc/flashlex/keys/root-ca-cert.pem");
  });

  test("the pickleDB file name maps to a SQLite file with the same stem", () => {
    expect(databaseFileName("subscription.json")).toBe("subscription.db");
    expect(databaseFileName("messages.sqlite")).toBe("messages.sqlite");
  });
});

describe("the wrong file", () => {
  test("the hub's hub.yml given as a thing's config is named as such (78), not as a config missing `flashlex`", () => {
    const file = join(dir, "hub.yml");
    writeFileSync(file, "hub:\n  name: localhost\n  api:\n    port: 8080\n");
    expect(configErrorOf(file).message).toBe(`${file}: this is a hub's settings (hub.yml), not a thing's config.yml: give the thing's config (-c) instead`);
  });

  test("a thing's config.yml in place of hub.yml is named as such (78), not as hub.yml missing `hub` (new-user pass 20, F4)", () => {
    const file = variant("copied-as-hub.yml", (t) => t);
    expect(() => loadHubSettings(file)).toThrow(
      new ConfigError(`${file}: this is a thing's config.yml, not a hub's settings (hub.yml): run hub init for a hub home, or give its --dir`),
    );
  });
});

describe("line breaks", () => {
  test("a config.yml with CR LF or lone CR line breaks (YAML 1.2 §5.4) loads as with LF: a lone CR was read as part of the line, so the file became one key and failed its schema", () => {
    const guide = readFileSync(GUIDE, "utf8");
    const dir = mkdtempSync(join(tmpdir(), "flashlex-breaks-"));
    try {
      for (const [name, text] of [
        ["crlf", guide.replace(/\n/g, "\r\n")],
        ["cr", guide.replace(/\n/g, "\r")],
      ] as const) {
        const file = join(dir, `${name}.yml`);
        writeFileSync(file, text);
        expect(loadThingConfig({ config: file }).yaml, name).toEqual(loadThingConfig({ config: GUIDE }).yaml);
      }
      // and a YAML error names the line an editor shows
      const bad = join(dir, "bad.yml");
      writeFileSync(bad, "flashlex:\r  thing:\r    name: [x\r");
      expect(configErrorOf(bad).message).toMatch(/bad\.yml:[34]:\d+: invalid YAML: [^\r\n]+$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("values the Python SDK took (PyYAML, YAML 1.1) load with their old meaning", () => {
  test("expireSeconds 0 or below keeps every message; useWebsocket yes/no/on/off are booleans; commitSha may be empty or a number", () => {
    const cases: [string, (t: string) => string, (c: ReturnType<typeof loadThingConfig>) => unknown, unknown][] = [
      ["expire-0.yml", (t) => t.replace("expireSeconds: 60", "expireSeconds: 0"), (c) => c.yaml.app.db.expireSeconds, 0],
      ["expire-neg.yml", (t) => t.replace("expireSeconds: 60", "expireSeconds: -1"), (c) => c.yaml.app.db.expireSeconds, -1],
      ["ws-no.yml", (t) => t.replace("useWebsocket: false", "useWebsocket: no"), (c) => c.yaml.thing.mqtt.useWebsocket, false],
      ["ws-off.yml", (t) => t.replace("useWebsocket: false", "useWebsocket: OFF"), (c) => c.yaml.thing.mqtt.useWebsocket, false],
      ["ws-yes.yml", (t) => t.replace("useWebsocket: false", "useWebsocket: Yes"), (c) => c.yaml.thing.mqtt.useWebsocket, true],
      ["sha-empty.yml", (t) => t.replace(/commitSha: .*/, "commitSha:"), (c) => c.yaml.dist?.commitSha, undefined],
      ["sha-number.yml", (t) => t.replace(/commitSha: .*/, "commitSha: 3814770"), (c) => c.yaml.dist?.commitSha, "3814770"],
    ];
    for (const [name, edit, read, expected] of cases) {
      const config = loadThingConfig({ config: variant(name, edit) });
      expect([name, read(config)]).toEqual([name, expected]);
    }
    // still refused: what no version ever meant
    expect(configErrorOf(variant("ws-maybe.yml", (t) => t.replace("useWebsocket: false", "useWebsocket: maybe"))).message).toContain(
      "flashlex.thing.mqtt.useWebsocket",
    );
    expect(configErrorOf(variant("expire-half.yml", (t) => t.replace("expireSeconds: 60", "expireSeconds: 1.5"))).message).toContain(
      "flashlex.app.db.expireSeconds",
    );
  });
});

describe("bad configuration is refused with the file and the key path", () => {
  test("a missing key", () => {
    const file = variant("missing.yml", (t) => t.replace(/^ {4}id: .*\n/m, ""));
    const err = configErrorOf(file);
    expect(err.message).toContain(file);
    expect(err.message).toContain("flashlex.thing.id: missing");
  });

  test("a mistyped value", () => {
    const file = variant("mistyped.yml", (t) => t.replace("port: 8883", "port: eighty"));
    expect(configErrorOf(file).message).toContain("flashlex.thing.mqtt.port");
  });

  test("flashlex.metrics.listen: a bare port is a number to YAML and means 127.0.0.1's; a word is refused with what to write", () => {
    const withListen = (value: string) => variant(`metrics-${value}.yml`, (t) => t.replace(/^flashlex:\n/m, `flashlex:\n  metrics:\n    listen: ${value}\n`));
    expect(loadThingConfig({ config: withListen("28736") }).yaml.metrics?.listen).toBe("28736");
    expect(configErrorOf(withListen("true")).message).toContain("flashlex.metrics.listen: HOST:PORT or PORT (127.0.0.1:9465, 9465)");
  });

  test("an unknown callback", () => {
    const file = variant("callback.yml", (t) => t.replace("callback: persistent", "callback: carrier-pigeon"));
    expect(configErrorOf(file).message).toContain("flashlex.app.callback");
  });

  test("invalid YAML names the line", () => {
    const file = variant("broken.yml", (t) => t.replace("    thread: subscribe", "    thread: [subscribe"));
    expect(configErrorOf(file).message).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+:\\d+: invalid YAML`));
  });

  test("a file that does not exist", () => {
    expect(configErrorOf(join(dir, "nope.yml")).message).toContain("cannot read");
  });

  test("a topic with a wildcard, NUL or too long is refused at load, naming the key", () => {
    const cases: [string, (t: string) => string, string][] = [
      ["plus.yml", (t) => t.replace("topic: ingress/ecd13b11-mything", "topic: ingress/+"), "flashlex.thing.mqtt.ingress.topic"],
      ["hash.yml", (t) => t.replace("topic: ingress/ecd13b11-mything", "topic: ingress/#"), "flashlex.thing.mqtt.ingress.topic"],
      ["egress.yml", (t) => t.replace("topic: flashlex/collect", "topic: flashlex/+"), "flashlex.thing.mqtt.egress.topic"],
      ["nul.yml", (t) => t.replace("topic: pubsub/ecd13b11-mything", 'topic: "pubsub/\0"'), "flashlex.thing.mqtt.pubsub.topic"],
      ["long.yml", (t) => t.replace("topic: ingress/ecd13b11-mything", `topic: ingress/${"x".repeat(70_000)}`), "flashlex.thing.mqtt.ingress.topic"],
    ];
    for (const [name, edit, key] of cases) {
      const message = configErrorOf(variant(name, edit)).message;
      expect(message).toContain(key);
      expect(message.split("\n")).toHaveLength(1);
    }
  });

  test("the database name must be a file name inside the data directory", () => {
    for (const name of ["..", ".", "../x", "a/b"]) {
      expect(configErrorOf(variant("db.yml", (t) => t.replace("subscriptionData: subscription.json", `subscriptionData: "${name}"`))).message).toContain(
        "flashlex.app.db.subscriptionData",
      );
    }
  });

  test("an API endpoint ending in /{env}/v1 (as the hub prints its API) is refused with the address to give: every request went to .../dev/v1/dev/v1/ (new-user pass 23, F7)", () => {
    const file = variant("doubled.yml", (t) => t.replace("endpoint: https://api.flashlex.com", "endpoint: https://api.flashlex.com/dev/v1/"));
    expect(() => loadThingConfig({ config: file })).toThrow(
      "flashlex.app.api.endpoint: ends with /dev/v1, which the agent adds itself from api.env: give the hub's address alone, https://api.flashlex.com",
    );
    const other = variant("other-env.yml", (t) => t.replace("endpoint: https://api.flashlex.com", "endpoint: https://api.flashlex.com/prod/v1"));
    expect(() => loadThingConfig({ config: other })).toThrow(
      "ends with /prod/v1, which the agent adds itself from api.env: give the hub's address alone, https://api.flashlex.com",
    );
    // a path before it (a hub behind a proxy) is kept
    const proxied = variant("proxied.yml", (t) => t.replace("endpoint: https://api.flashlex.com", "endpoint: https://example.com/flashlex"));
    expect(loadThingConfig({ config: proxied }).yaml.app.api.endpoint).toBe("https://example.com/flashlex");
  });

  test("unknown keys load, and are reported for a warning", () => {
    const file = variant("unknown.yml", (t) => t.replace("    thread: subscribe", "    thread: subscribe\n    colour: blue"));
    expect(loadThingConfig({ config: file }).unknownKeys).toEqual(["flashlex.app.colour"]);
    // names every object has are no declared keys (attack round 24, F4: they loaded without a warning)
    const inherited = variant("inherited.yml", (t) => t.replace("    thread: subscribe", "    thread: subscribe\n    constructor: x\n    toString: y"));
    expect(loadThingConfig({ config: inherited }).unknownKeys).toEqual(["flashlex.app.constructor", "flashlex.app.toString"]);
  });

  test("a misspelt key's warning says which key it likely meant (at most two letters off, in the same object); others are only ignored", () => {
    const file = variant("misspelt.yml", (t) =>
      t.replace("    callback: persistent", "    calback: persistent").replace("    thread: subscribe", "    thread: subscribe\n    colour: blue"),
    );
    const { unknownKeys } = loadThingConfig({ config: file });
    expect(unknownKeys.map((key) => [key, unknownConfigKeyNote(key)])).toStrictEqual([
      ["flashlex.app.calback", "ignored; did you mean flashlex.app.callback?"],
      ["flashlex.app.colour", "ignored"],
    ]);
    expect(unknownConfigKeyNote("flashlex.thing.mqtt.prot")).toBe("ignored; did you mean flashlex.thing.mqtt.port?");
    expect(unknownConfigKeyNote("flashlex.nosuch.deeper")).toBe("ignored");
    expect(unknownHubKeyNote("hub.api.prot")).toBe("ignored; did you mean hub.api.port?");
    expect(unknownHubKeyNote("hub.colour")).toBe("ignored");
  });
});

describe("schema errors", () => {
  test("a required key that is missing while a key two letters off holds its place: the error names that key and the rename (new-user pass 20, F3)", () => {
    const file = variant("misspelt-required.yml", (t) => t.replace("      endpoint:", "      endpont:"));
    expect(configErrorOf(file).message).toContain(
      "flashlex.app.api.endpoint: missing (expected string); the key flashlex.app.api.endpont is there: rename it to endpoint",
    );
    // nothing near: missing, and only that
    const far = variant("missing-required.yml", (t) => t.replace("      endpoint:", "      somewhere:"));
    expect(configErrorOf(far).message).toContain("flashlex.app.api.endpoint: missing (expected string)");
    expect(configErrorOf(far).message).not.toContain("rename");
  });

  test("every failing key path is named with what is wrong there, never '(and 1 more)'", async () => {
    const { validate } = await import("../../src/shared/yaml.ts");
    const { z } = await import("zod");
    const schema = z.object({
      env: z
        .string()
        .regex(/^[a-z]+$/, "letters only")
        .refine((v) => v !== "", "must not be empty"),
      port: z.number(),
    });
    let message = "";
    try {
      validate(schema, { env: "", port: "x" }, "hub.yml");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    // zod's own words said with the value found (new-user pass 22, F3: "Invalid input: expected number, received string")
    // and a schema's own words with it too (new-user pass 23, F10: "keepFor: 30" was told what to write, not what it was)
    expect(message).toBe('hub.yml: env: letters only (it is empty); must not be empty; port: expected a number, not "x"');
    expect(message).not.toContain("more)");
  });

  test("a schema's words say the value found, but never a database URL's, which may hold a password", async () => {
    const { validate } = await import("../../src/shared/yaml.ts");
    const { HubYamlSchema } = await import("../../src/hub/home/settings.ts");
    const hub = {
      ownerId: "ecd13b11-2d4f-4e71-9a41-5f0e2c1b7a3d",
      env: "dev",
      api: { publicUrl: "http://127.0.0.1:8080" },
      broker: { host: "localhost" },
    };
    const refusal = (extra: object) => {
      try {
        validate(HubYamlSchema, { hub: { ...hub, ...extra } }, "hub.yml");
      } catch (err) {
        return (err as Error).message;
      }
      return "taken";
    };
    expect(refusal({ certificates: { renewalCheck: 30 } })).toContain("hub.certificates.renewalCheck: a duration from 1s to 7d, such as 15m (it is 30)");
    const secret = refusal({ database: { url: "mysql://flashlex@db.lan/hub?password=p4ssw0rd" } });
    expect(secret).toContain("hub.database.url: must be");
    expect(secret).not.toContain("p4ssw0rd");
    // the broker certificate's names are issued at each start now: one that cannot be is refused here (verify pass 29, F2/F3)
    for (const [name, says] of [
      ["*.wild.lan", "not a DNS name or IP address (no wildcard, trailing dot or zone)"],
      ["dot.lan.", "not a DNS name or IP address"],
      ["fe80::1%lo", "not a DNS name or IP address"],
      ["::ffff:127.0.0.1", "an IPv4-mapped IPv6 address: give the IPv4 address itself"],
    ]) {
      expect(refusal({ broker: { host: "localhost", names: ["localhost", name] } })).toContain(`hub.broker.names.1: ${says}`);
    }
    // nor a URL's query or fragment, where a key may ride (verify pass 29, F6)
    const query = refusal({ api: { publicUrl: "http://h.lan:1/v1?key=T0PSECRET#frag" } });
    expect(query).toContain('(it is "http://h.lan:1/v1?…")');
    expect(query).not.toContain("T0PSECRET");
  });

  test("zod's own words come with the value found; an empty file says so (new-user pass 22, F3: '(top level): ... received null', and 'Invalid URL' with no value)", async () => {
    const { validate } = await import("../../src/shared/yaml.ts");
    const { z } = await import("zod");
    const schema = z.object({ endpoint: z.url({ protocol: /^https?$/ }), key: z.enum(["rsa", "ec"]), port: z.number().int() });
    const refusalBy = (by: Parameters<typeof validate>[0], file: string) => (raw: unknown) => {
      try {
        validate(by, raw, file);
      } catch (err) {
        return (err as Error).message;
      }
      return "taken";
    };
    const refusal = refusalBy(schema, "config.yml");
    expect(refusal({ endpoint: "localhost:28422", key: "dsa", port: 1.5 })).toBe(
      'config.yml: endpoint: expected an http:// or https:// URL, not "localhost:28422"; key: invalid option: expected one of "rsa"|"ec" (it is "dsa"); port: expected a whole number, not 1.5',
    );
    // bounds in a reader's words, not zod's "too small: expected string to have >=1 characters" (verify pass 27, F7)
    const bounded = z.object({
      host: z.string().min(1),
      name: z.string().max(3),
      port: z.number().max(65535),
      count: z.number().gt(0),
      urls: z.array(z.url({ protocol: /^mqtts$/ })).min(1),
    });
    const refused = refusalBy(bounded, "hub.yml");
    expect(refused({ host: "", name: "abcd", port: 70000, count: 0, urls: [] })).toBe(
      'hub.yml: host: must not be empty; name: must be at most 3 characters (it is "abcd", 4); port: must be at most 65535 (it is 70000); count: must be more than 0 (it is 0); urls: must list at least 1 (it lists 0)',
    );
    expect(refused({ host: "h", name: "a", port: 1, count: 1, urls: ["https://x"] })).toBe('hub.yml: urls.0: expected an mqtts:// URL, not "https://x"');
    expect(refusal({ endpoint: ["x"], key: null, port: { a: 1 } })).toBe(
      'config.yml: endpoint: expected text, not a list; key: invalid option: expected one of "rsa"|"ec" (it is empty); port: expected a number, not keys under it',
    );
    expect(refusal(null)).toBe("config.yml: the file is empty: it holds no settings");
  });
});

describe("the config cache (data/config.parsed.json)", () => {
  // a source run keeps no cache (its code may change under one name): these loads name a build
  const madeBy = "flashlex 9.9.9 (test), yaml 2";
  const loads = (config: string) => loadThingConfig({ config }, "given with -c", { madeBy });
  function thingDir(name: string, edit: (text: string) => string = (t) => t): { config: string; cache: string } {
    const home = join(dir, name);
    mkdirSync(join(home, "data"), { recursive: true });
    const config = join(home, "config.yml");
    writeFileSync(config, edit(readFileSync(GUIDE, "utf8")));
    return { config, cache: join(home, "data", CONFIG_CACHE_NAME) };
  }

  const serveLoads = (config: string) => loadThingConfig({ config }, "given with -c", { keepParsed: true, madeBy });

  test("serve writes it (0600); a load of the same text takes it without interpreting again; a changed text is read afresh", () => {
    const { config, cache } = thingDir("cached");
    expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
    expect(existsSync(cache)).toBe(false);
    expect(serveLoads(config).yaml.thing.mqtt.port).toBe(8883);
    expect(statSync(cache).mode & 0o777).toBe(0o600);
    expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
    // what a hit skips: the interpretation (parse and validation) is not run again
    let interpreted = 0;
    const interpret = (raw: unknown) => (interpreted++, raw);
    const counted = { file: join(dir, "interpret-count.json"), madeBy, update: true };
    loadYamlFile(config, interpret, counted);
    loadYamlFile(config, interpret, counted);
    expect(interpreted).toBe(1);
    // the file changed (one byte): read afresh, and serve's next load updates the cache
    writeFileSync(config, readFileSync(config, "utf8").replace("port: 8883", "port: 8884"));
    expect(loads(config).yaml.thing.mqtt.port).toBe(8884);
    expect(serveLoads(config).yaml.thing.mqtt.port).toBe(8884);
    expect(JSON.parse(readFileSync(cache, "utf8")).value.yaml.thing.mqtt.port).toBe(8884);
    loadYamlFile(config, interpret, counted);
    expect(interpreted).toBe(2);
  });

  test("a cache edited by hand, cut short, or not a regular file (a FIFO, /dev/zero) is a miss, never a hang", () => {
    const { config, cache } = thingDir("edited");
    serveLoads(config);
    const kept = JSON.parse(readFileSync(cache, "utf8"));
    for (const value of [null, {}, { yaml: null }, { ...kept.value, yaml: { ...kept.value.yaml, thing: { ...kept.value.yaml.thing, mqtt: { port: 1 } } } }]) {
      writeFileSync(cache, JSON.stringify({ ...kept, value }));
      expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
    }
    writeFileSync(cache, readFileSync(cache, "utf8").slice(0, 40));
    expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
    rmSync(cache);
    expect(Bun.spawnSync(["mkfifo", cache]).exitCode).toBe(0);
    expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
    rmSync(cache);
    symlinkSync("/dev/zero", cache);
    expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
  });

  test("a damaged or foreign cache is ignored and replaced; another build's is not used; a source run keeps none", () => {
    const { config, cache } = thingDir("damaged");
    writeFileSync(cache, "{ not json");
    expect(serveLoads(config).yaml.thing.mqtt.port).toBe(8883);
    const kept = JSON.parse(readFileSync(cache, "utf8"));
    kept.madeBy = "flashlex 0.0.1 (older), yaml 1.0.0";
    kept.value.yaml.thing.mqtt.port = 1;
    writeFileSync(cache, JSON.stringify(kept));
    expect(loads(config).yaml.thing.mqtt.port).toBe(8883);
    const source = thingDir("source-run");
    loadThingConfig({ config: source.config }, "given with -c", { keepParsed: true });
    expect(existsSync(source.cache)).toBe(false);
  });

  test("a bad file is still refused with its line, whatever the cache holds; a value JSON cannot carry is not cached", () => {
    const { config } = thingDir("refused");
    serveLoads(config);
    writeFileSync(config, `${readFileSync(config, "utf8")}\n  bad: [unclosed\n`);
    expect(configErrorOf(config).message).toMatch(/config\.yml:\d+:\d+: invalid YAML/);
    const infinite = thingDir("infinite");
    const value = loadYamlFile(infinite.config, () => ({ weight: Number.POSITIVE_INFINITY }), { file: infinite.cache, madeBy, update: true });
    expect(value.weight).toBe(Number.POSITIVE_INFINITY);
    expect(existsSync(infinite.cache)).toBe(false);
  });

  test("a command that only reads makes no data directory for it; serve makes it (0700), as it would a moment later", () => {
    const config = variant("no-data.yml", (t) => t);
    const data = join(dir, "missing", "data");
    loadThingConfig({ config, data }, "given with -c", { madeBy });
    expect(existsSync(join(dir, "missing"))).toBe(false);
    loadThingConfig({ config, data }, "given with -c", { keepParsed: true, madeBy });
    expect(statSync(data).mode & 0o777).toBe(0o700);
    expect(existsSync(join(data, CONFIG_CACHE_NAME))).toBe(true);
  });
});
