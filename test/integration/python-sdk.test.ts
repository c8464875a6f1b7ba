/**
 * flashlex.py, the Python module in every distribution zip, run by Debian's python3 in isolated
 * mode (`-I`: no user site-packages, no PYTHON* variables) against the compiled binary and the
 * real hub: a thing is created with `hub thing create`, its zip unpacked, the binary put beside
 * the folder as a user does, and Python apps written with the old SDK's method names
 * (collectMessage, getSubscribedMessages, removeMessageFromStore) run with `serve` running (its
 * socket) and stopped (the database and `flashlex collect`), once without PyYAML (`-S`).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { socketPath } from "../../src/thing/local/wire.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";

/** Debian's python3 (`apt-get install python3`), not whichever one comes first on PATH. */
const PYTHON = "/usr/bin/python3";

const work = mkdtempSync(join(tmpdir(), "flashlex-python-"));
let hub: HubFixture;
let thing: HubThing;
let hubServe: Background;
let serve: Background | undefined;

afterAll(async () => {
  await serve?.stop(5_000);
  await hubServe?.stop(5_000);
  rmSync(work, { recursive: true, force: true });
}, 20_000);

beforeAll(async () => {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: apt-get install -y python3 (scripts/install-system-packages.sh)`);
  binaryPath();
  hub = await makeHubFixture(work);
  thing = await hub.createThing("py");
  // as the distribution's README says: the binary beside the unzipped folder
  symlinkSync(binaryPath(), join(work, "things", "flashlex"));
  hubServe = await hub.serve();
}, 60_000);

interface PythonRun {
  code: number;
  stdout: string;
  stderr: string;
  /** the last line of stdout, parsed */
  out: any;
}

/**
 * Runs `code` as an application in the thing's folder with `python3 -I` (and `-S`: without the
 * system's site-packages, so without PyYAML). `out(value)` prints the JSON answer; `sqlite_opened`
 * counts the module's sqlite3.connect calls (it opens the database only when serve is stopped).
 */
async function python(code: string, opts: { noSite?: boolean; cwd?: string; env?: Record<string, string> } = {}): Promise<PythonRun> {
  const prelude = [
    "import json, sqlite3, sys",
    "sys.path.insert(0, '.')", // -I leaves the script's folder off sys.path
    "_connect = sqlite3.connect",
    "sqlite_opened = []",
    "def _counting_connect(*args, **kwargs):",
    "    sqlite_opened.append(args[0])",
    "    return _connect(*args, **kwargs)",
    "sqlite3.connect = _counting_connect",
    "def out(value): print(json.dumps(value, default=str))",
    "from flashlex import FlashlexSDK, FlashlexError",
    "def error(call):",
    "    try:",
    "        call()",
    "    except FlashlexError as err:",
    "        return {'kind': err.kind, 'exitCode': err.exit_code, 'message': str(err)}",
    "    return None",
  ].join("\n");
  const proc = Bun.spawn([PYTHON, "-I", ...(opts.noSite ? ["-S"] : []), "-c", `${prelude}\n${code}`], {
    cwd: opts.cwd ?? thing.root,
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: "/usr/bin:/bin", HOME: work, ...opts.env },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const [stdout, stderr, exit] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const last = stdout.trim().split("\n").pop() ?? "";
  let out: unknown;
  try {
    out = JSON.parse(last);
  } catch {
    out = undefined;
  }
  if (exit !== 0) throw new Error(`python exited ${exit}\n${stdout}\n${stderr}`);
  return { code: exit, stdout, stderr, out };
}

/** The egress documents the hub stored for the thing, by flmessagespk (operator API). */
async function egress(): Promise<{ flmessagespk: string; payload: any }[]> {
  const response = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/things/${thing.id}/messages?messagetype=egress`, {
    headers: { Authorization: `Bearer ${hub.token}` },
    signal: AbortSignal.timeout(10_000),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { result: { flmessagespk: string; payload: any }[] }).result;
}

/** Each document (by its `label`) stored exactly once by the hub; records losses and duplicates. */
async function expectStoredOnce(labels: string[]): Promise<void> {
  const stored = (await egress()).map((m) => m.payload?.label);
  const missing = labels.filter((label) => !stored.includes(label));
  const twice = labels.filter((label) => stored.filter((s) => s === label).length > 1);
  tally("lost", missing.length);
  tally("duplicates", twice.length);
  expect({ missing, twice }).toEqual({ missing: [], twice: [] });
}

async function waitUntil<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${serve?.output() ?? ""}`);
    await Bun.sleep(100);
  }
}

async function storedIngress(state: "--all" | "" = ""): Promise<{ id: number; payload: string; ackedAt: string | null }[]> {
  const result = await run(["messages", "list", "--json", ...(state ? [state] : []), ...thing.flags]);
  expect(result.code, result.stderr).toBe(0);
  return result.stdout.trim()
    ? result.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
    : [];
}

describe("flashlex.py in the distribution zip: Debian's python3 -I, the compiled binary, the real hub", () => {
  test("the zip holds flashlex.py beside config.yml, byte for byte, and its README shows the old method names", () => {
    const files = unzipSync(readFileSync(join(work, `${thing.name}.zip`)));
    const template = readFileSync(join(import.meta.dir, "../../dist-template/flashlex.py"));
    expect(Buffer.from(files[`${thing.name}/flashlex.py`]!).equals(template)).toBe(true);
    expect(Object.keys(files)).toContain(`${thing.name}/config.yml`);
    const readme = new TextDecoder().decode(files[`${thing.name}/README.md`]);
    for (const phrase of ["from flashlex import FlashlexSDK", "collectMessage(", "getSubscribedMessages()", "removeMessageFromStore(message)"]) {
      expect(readme).toContain(phrase);
    }
    // no download line in it (the zip is already there), and no operator token asked for
    expect(readme).not.toContain("FLASHLEX_TOKEN");
  });

  test("serve stopped: collectMessage returns 200 and the hub stores each document once (through flashlex collect beside the folder)", async () => {
    const { out } = await python(`
sdk = FlashlexSDK("config.yml")
status = sdk.collectMessage({"label": "stopped-1", "foo": "bar"})
result = sdk.collect({"label": "stopped-2"})
# the old SDK's way: the application loads the config itself and sets the paths
config = sdk.loadConfig("config.yml")
config["flashlex"]["app"]["db"]["dataPath"] = "data"
config["flashlex"]["thing"]["keys"]["path"] = "keys"
old_status = FlashlexSDK(config).collectMessage({"label": "stopped-3"})
out({"running": sdk.serveIsRunning(), "status": status, "result": result.as_dict(), "old": old_status,
     "paths": [sdk.data_dir, sdk.keys_dir, sdk.database_file]})
`);
    expect(out.running).toBe(false);
    expect(out.status).toBe(200);
    expect(out.old).toBe(200);
    expect(out.result).toMatchObject({ outcome: "sent", status: 200, via: "binary" });
    expect(out.paths).toEqual([join(thing.root, "data"), join(thing.root, "keys"), join(thing.root, "data", "subscription.db")]);
    const stored = await egress();
    expect(stored.find((m) => m.flmessagespk === out.result.message_id)?.payload).toEqual({ label: "stopped-2" });
    expect(stored.find((m) => m.payload?.label === "stopped-1")?.payload).toEqual({ label: "stopped-1", foo: "bar" });
    await expectStoredOnce(["stopped-1", "stopped-2", "stopped-3"]);
  }, 20_000);

  test("serve running: ingress sent with `hub send` is read, acknowledged and removed through its socket; collect needs no binary", async () => {
    serve = start(["serve", ...thing.flags]);
    await serve.waitFor(/serve\.started/);
    for (let n = 1; n <= 4; n++) await hub.flashlex(["hub", "send", thing.name, "--dir", hub.dir], JSON.stringify({ n }));
    await waitUntil("four messages stored", async () => (await storedIngress()).length === 4);

    const { out } = await python(`
sdk = FlashlexSDK("config.yml", binary="/nonexistent/flashlex")  # serve does the collecting
messages = sdk.getSubscribedMessages()
first, second = messages[0], messages[1]
acked = sdk.acknowledgeMessage(first)
removed = sdk.removeMessageFromStore(second)
again = sdk.removeMessageFromStore(second)
try:
    sdk.removeMessageFromStore({"no": "pk"})
    key_error = None
except KeyError as err:
    key_error = str(err)
deep = []
for _ in range(70):
    deep = [deep]
import flashlex
raw = lambda body: error(lambda: flashlex._call_serve(sdk.socket_path, "POST", "/v1/collect", body, 10))
out({"rawNotJson": raw({"body": "{not json", "via": "http"}), "rawNoBody": raw({"via": "http"}), "rawVia": raw({"body": "{}", "via": "bogus"}),
     "running": sdk.serveIsRunning(), "messages": messages, "acked": acked, "removed": removed, "again": again,
     "after": [m["message"]["payload"]["message"]["n"] for m in sdk.getSubscribedMessages()],
     "newest": [m["message"]["payload"]["message"]["n"] for m in sdk.getSubscribedMessages(count=1, reverse=True)],
     "status": sdk.collectMessage({"label": "serving-1"}),
     "viaMqtt": sdk.collect({"label": "serving-2"}, via="mqtt").as_dict(),
     "keyError": key_error, "deep": error(lambda: sdk.collect(deep)),
     "sqliteOpened": len(sqlite_opened)})
`);
    expect(out.running).toBe(true);
    // the old SDK's message shape: pk, timestamp, datetime, message {topic, payload, pos, retain, mid}
    expect(out.messages.map((m: any) => m.message.payload.message)).toStrictEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    for (const m of out.messages) {
      expect(m).toMatchObject({ pk: expect.any(Number), timestamp: expect.any(Number), acked: null });
      expect(m.datetime).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
      expect(m.message).toMatchObject({ topic: `ingress/${thing.name}`, pos: 1, retain: 0, mid: expect.any(Number) });
      expect(m.message.payload.flmessagespk).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect([out.acked, out.removed, out.again]).toEqual([true, true, false]);
    expect(out.after).toEqual([3, 4]);
    expect(out.newest).toEqual([4]);
    expect(out.status).toBe(200);
    expect(out.viaMqtt).toMatchObject({ outcome: "sent", via: "serve" });
    expect(out.keyError).toBe("'pk key is required'");
    // the running agent checks the document as `flashlex collect` does, and says so in its words
    expect(out.deep).toEqual({
      kind: "data",
      exitCode: 65,
      message: "the collect request's body: arrays and objects nested more than 64 levels deep (the limit); nothing was queued",
    });
    // what any other client of the socket sends is checked too (nothing of it is queued)
    expect(out.rawNotJson).toMatchObject({ kind: "data", exitCode: 65 });
    expect(out.rawNotJson.message).toStartWith("the collect request's body: not JSON");
    expect(out.rawNoBody).toEqual({ kind: "data", exitCode: 65, message: "the collect request's body: empty, expected one JSON document; nothing was queued" });
    expect(out.rawVia).toEqual({ kind: "usage", exitCode: 64, message: 'via must be http or mqtt, not "bogus"' });
    tally("badInputs", 4);
    expect(out.sqliteOpened).toBe(0);
    // what the agent sees: 1 acknowledged, 2 gone, 3 and 4 waiting
    expect((await storedIngress("--all")).map((m) => [JSON.parse(m.payload).message.n, m.ackedAt !== null])).toStrictEqual([
      [1, true],
      [3, false],
      [4, false],
    ]);
    await waitUntil("the MQTT collect stored", async () => (await egress()).some((m) => m.payload?.label === "serving-2"));
    await expectStoredOnce(["serving-1", "serving-2"]);
  }, 30_000);

  test("serve stopped, without PyYAML (python3 -I -S): the database directly, FlashlexSDK() finds ./config.yml", async () => {
    expect(await serve!.stop()).toBe(0);
    serve = undefined;
    const { out } = await python(
      `
try:
    import yaml
    has_yaml = True
except ImportError:
    has_yaml = False
sdk = FlashlexSDK()
waiting = sdk.getSubscribedMessages()
everything = sdk.getSubscribedMessages(state="all")
acked = sdk.acknowledgeMessage(waiting[0])
removed = sdk.removeMessageFromStore(waiting[1])
out({"hasYaml": has_yaml, "config": sdk.config_file, "running": sdk.serveIsRunning(),
     "waiting": [m["message"]["payload"]["message"]["n"] for m in waiting],
     "everything": [[m["message"]["payload"]["message"]["n"], m["acked"] is not None] for m in everything],
     "acked": acked, "removed": removed, "after": sdk.getSubscribedMessages(),
     "status": sdk.collectMessage({"label": "stopped-no-yaml"}), "sqliteOpened": len(sqlite_opened)})
`,
      { noSite: true },
    );
    expect(out.hasYaml).toBe(false);
    expect(out.config).toBe(join(thing.root, "config.yml"));
    expect(out.running).toBe(false);
    expect(out.waiting).toEqual([3, 4]);
    expect(out.everything).toEqual([
      [1, true],
      [3, false],
      [4, false],
    ]);
    expect([out.acked, out.removed, out.after, out.status]).toEqual([true, true, [], 200]);
    expect(out.sqliteOpened).toBeGreaterThan(0);
    // the agent reads what Python wrote: 1 and 3 acknowledged, 4 gone
    expect((await storedIngress("--all")).map((m) => [JSON.parse(m.payload).message.n, m.ackedAt !== null])).toStrictEqual([
      [1, true],
      [3, true],
    ]);
    await expectStoredOnce(["stopped-no-yaml"]);
  }, 20_000);

  test("an old config file's db.dataPath and keys.path are ignored, as serve ignores them; a row with a time past year 9999 is listed with datetime None", async () => {
    const text = readFileSync(join(thing.root, "config.yml"), "utf8");
    const old = text
      .replace("      subscriptionData: subscription.json\n", "      subscriptionData: subscription.json\n      dataPath: /nonexistent/old-data\n")
      .replace("      rootCA: root-ca-cert.pem\n", "      rootCA: root-ca-cert.pem\n      path: /nonexistent/old-keys\n");
    expect(old).toContain("dataPath: /nonexistent/old-data");
    expect(old).toContain("path: /nonexistent/old-keys");
    writeFileSync(join(thing.root, "old-config.yml"), old);
    const database = join(thing.root, "data", "subscription.db");
    const sqlite = Bun.spawnSync([
      "sqlite3",
      database,
      "INSERT INTO ingress_messages (topic, payload, qos, retain, received_at) VALUES ('ingress/far', '{\"far\":1}', 1, 0, 253402300800000 * 10)",
    ]);
    expect(sqlite.exitCode).toBe(0);
    const { out } = await python(`
sdk = FlashlexSDK("old-config.yml")
far = [m for m in sdk.getSubscribedMessages() if m["message"]["topic"] == "ingress/far"]
out({"paths": [sdk.data_dir, sdk.keys_dir], "far": [m["datetime"] for m in far], "removed": sdk.removeMessageFromStore(far[0])})
`);
    expect(out).toEqual({ paths: [join(thing.root, "data"), join(thing.root, "keys")], far: [null], removed: true });
  }, 20_000);

  test("collect's outcomes map to the old SDK's status: 413 refused (65), 202 queued (69), 503 not queued (75)", async () => {
    const publicKeyPem = readFileSync(join(thing.root, "keys", `${thing.name}-keypair-public.pem`), "utf8");
    const receiver = await startReceiver({ thingId: thing.id, publicKeyPem });
    const closedPort = await freePort();
    const config = readFileSync(join(thing.root, "config.yml"), "utf8");
    const withEndpoint = (url: string, queueing: number) =>
      config.replace(/endpoint: http:\/\/\S+/, `endpoint: ${url}`).replace(/offlinePublishQueueing: -?\d+/, `offlinePublishQueueing: ${queueing}`);
    writeFileSync(join(thing.root, "refusing.yml"), withEndpoint(receiver.url, -1));
    writeFileSync(join(thing.root, "offline.yml"), withEndpoint(`http://127.0.0.1:${closedPort}`, -1));
    writeFileSync(join(thing.root, "no-queue.yml"), withEndpoint(`http://127.0.0.1:${closedPort}`, 0));
    receiver.answerStatus = 413;
    try {
      tally("faults", 3);
      const { out } = await python(`
other = "${join(work, "other-data")}"  # an outbox serve does not deliver
refusing = FlashlexSDK("refusing.yml", data=other)
offline = FlashlexSDK("offline.yml", data=other)
no_queue = FlashlexSDK("no-queue.yml", data=other)
out({"refused": refusing.collectMessage({"label": "refused"}), "refusedResult": refusing.collect({"label": "refused"}).as_dict(),
     "queued": offline.collectMessage({"label": "queued"}), "queuedResult": offline.collect({"label": "queued"}).as_dict(),
     "notQueued": no_queue.collectMessage({"label": "not queued"}), "notQueuedError": error(lambda: no_queue.collect({"label": "not queued"}))})
`);
      expect(out.refused).toBe(413);
      expect(out.refusedResult).toMatchObject({ outcome: "rejected", status: 413, via: "binary" });
      expect(out.queued).toBe(202);
      expect(out.queuedResult).toMatchObject({ outcome: "queued", status: null, via: "binary" });
      expect(out.queuedResult.error).toContain("127.0.0.1");
      expect(out.notQueued).toBe(503);
      expect(out.notQueuedError).toMatchObject({ kind: "try-later", exitCode: 75 });
      expect(out.notQueuedError.message).toContain("offlinePublishQueueing is 0 (no offline queueing): nothing was queued, try again later");
      // the outbox of that data directory: the two refused kept as rejected, the two queued pending
      const outbox = await run([
        "outbox",
        "list",
        "--json",
        "-c",
        join(thing.root, "offline.yml"),
        "-k",
        join(thing.root, "keys"),
        "-d",
        join(work, "other-data"),
      ]);
      expect(
        outbox.stdout
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line).state)
          .sort(),
      ).toEqual(["pending", "pending", "rejected", "rejected"]);
    } finally {
      await receiver.stop();
    }
  }, 20_000);

  test("errors are FlashlexError exceptions carrying the agent's one-line message, kind and exit code", async () => {
    const config = readFileSync(join(thing.root, "config.yml"), "utf8");
    writeFileSync(join(thing.root, "bad-port.yml"), config.replace(/port: \d+/, "port: eighty"));
    const tabLine = config.split("\n").findIndex((line) => line.includes("callback:")) + 1;
    writeFileSync(join(thing.root, "bad-yaml.yml"), config.replace("    callback:", "\tcallback:"));
    // flow mappings: YAML the small reader leaves to PyYAML
    writeFileSync(
      join(thing.root, "flow.yml"),
      config.replace(/ {4}db:\n {6}subscriptionData: (\S+)\n {6}expireSeconds: (\d+)\n/, "    db: {subscriptionData: $1, expireSeconds: $2}\n"),
    );
    expect(readFileSync(join(thing.root, "flow.yml"), "utf8")).toContain("db: {subscriptionData");
    const agent = await run(["collect", "-c", join(thing.root, "bad-port.yml"), "-k", join(thing.root, "keys"), "-d", join(thing.root, "data")], {
      input: "{}",
    });
    expect(agent.code).toBe(78);
    const agentLine = agent.stderr
      .trim()
      .split("\n")
      .pop()!
      .replace(/^flashlex: /, "");

    const script = `
sdk = FlashlexSDK("config.yml")
mkdir_lock = lambda: __import__("os").mkdir(sdk.database_file + ".lock")
results = {
    "badPort": error(lambda: FlashlexSDK("bad-port.yml").collectMessage({"label": "never"})),
    "badYaml": error(lambda: FlashlexSDK("bad-yaml.yml")),
    "missing": error(lambda: FlashlexSDK("missing.yml")),
    "flow": error(lambda: FlashlexSDK("flow.yml").getSubscribedMessages()),
    "nan": error(lambda: sdk.collectMessage({"x": float("nan")})),
    "notJson": error(lambda: sdk.collectMessage({"x": object()})),
    "tooLarge": error(lambda: sdk.collectMessage({"label": "x" * 300000})),
    "noBinary": error(lambda: FlashlexSDK("config.yml", binary="/nonexistent/flashlex").collectMessage({"label": "never"})),
    "badState": error(lambda: sdk.getSubscribedMessages(state="new")),
    "hugeId": error(lambda: sdk.acknowledgeMessage(2**70)),
    "wordId": error(lambda: sdk.removeMessageFromStore("abc")),
    "dataFile": error(lambda: FlashlexSDK("config.yml", data="config.yml").getSubscribedMessages()),
    "dataTypo": error(lambda: FlashlexSDK("config.yml", data="no/such/data").acknowledgeMessage(1)),
    "dataNumber": error(lambda: FlashlexSDK({"flashlex": {"app": {"db": {"dataPath": 17}}}}).getSubscribedMessages()),
}
mkdir_lock()
results["locked"] = error(lambda: sdk.getSubscribedMessages())
__import__("os").rmdir(sdk.database_file + ".lock")
results["afterLock"] = sdk.getSubscribedMessages()
out(results)
`;
    const withYaml = (await python(script)).out;
    const withoutYaml = (await python(script, { noSite: true })).out;
    tally("badInputs", 14 * 2);

    for (const out of [withYaml, withoutYaml]) {
      // the binary's own line, word for word
      expect(out.badPort).toEqual({ kind: "config", exitCode: 78, message: agentLine });
      expect(agentLine).toContain("bad-port.yml: flashlex.thing.mqtt.port");
      expect(out.badYaml.kind).toBe("config");
      expect(out.badYaml.message).toStartWith(`${join(thing.root, "bad-yaml.yml")}:${tabLine}:`);
      expect(out.missing).toEqual({
        kind: "config",
        exitCode: 78,
        message: `${join(thing.root, "missing.yml")}: cannot read the configuration file: there is no such file (ENOENT)`,
      });
      expect(out.nan).toMatchObject({ kind: "data", exitCode: 65 });
      expect(out.notJson).toMatchObject({ kind: "data", exitCode: 65 });
      expect(out.tooLarge).toMatchObject({ kind: "data", exitCode: 65 });
      expect(out.tooLarge.message).toMatch(/^stdin: 3000\d\d bytes as compact JSON, over the 262144-byte limit; nothing was queued$/);
      expect(out.noBinary).toMatchObject({
        kind: "config",
        exitCode: 78,
        message: "/nonexistent/flashlex: not an executable flashlex binary (FlashlexSDK binary=)",
      });
      expect(out.badState).toMatchObject({ kind: "usage", exitCode: 64 });
      expect(out.locked).toMatchObject({ kind: "try-later", exitCode: 75 });
      expect(out.locked.message).toContain("subscription.db.lock exists");
      expect(out.afterLock).toEqual([]);
      // ids and data directories as the agent's messages commands refuse them: 64, never a raw
      // OverflowError or TypeError, never "no messages" for a typo
      const idRule = "(ids are whole numbers from 1 to 9007199254740991)";
      expect(out.hugeId).toEqual({ kind: "usage", exitCode: 64, message: `not a message id: 1180591620717411303424 ${idRule}` });
      expect(out.wordId).toEqual({ kind: "usage", exitCode: 64, message: `not a message id: 'abc' ${idRule}` });
      expect(out.dataFile).toMatchObject({
        kind: "usage",
        exitCode: 64,
        message: `data ${join(thing.root, "config.yml")}: not a directory; pass the data directory serve uses (by default data/ beside the config)`,
      });
      expect(out.dataTypo).toMatchObject({ kind: "usage", exitCode: 64 });
      expect(out.dataTypo.message).toStartWith(`data ${join(thing.root, "no/such/data")}: no such directory, nor ${join(thing.root, "no/such")}`);
      expect(out.dataNumber).toEqual({ kind: "config", exitCode: 78, message: "flashlex.app.db.dataPath must be a directory path, not 17" });
    }
    // the agent refuses the tab too, naming the same line
    const agentTab = await run(["messages", "list", "-c", join(thing.root, "bad-yaml.yml"), "-k", join(thing.root, "keys")]);
    expect(agentTab.stderr).toContain(`${join(thing.root, "bad-yaml.yml")}:${tabLine}:`);
    // YAML beyond the small reader: PyYAML reads it; without PyYAML it is refused naming the line
    expect(withYaml.flow).toBeNull();
    expect(withoutYaml.flow).toMatchObject({ kind: "config", exitCode: 78 });
    expect(withoutYaml.flow.message).toContain("flow.yml:");
    expect(withoutYaml.flow.message).toContain("install python3-yaml");
    // nothing of it reached the hub
    expect((await egress()).filter((m) => m.payload?.label === "never" || String(m.payload?.label).startsWith("xxx"))).toEqual([]);
  }, 20_000);

  test("a serve killed with SIGKILL leaves its socket behind: the module finds no serve there and uses the database", async () => {
    const killed = start(["serve", ...thing.flags]);
    await killed.waitFor(/serve\.started/);
    await hub.flashlex(["hub", "send", thing.name, "--dir", hub.dir], JSON.stringify({ n: 5 }));
    await waitUntil("message 5 stored", async () => (await storedIngress()).some((m) => JSON.parse(m.payload).message.n === 5));
    killed.proc.kill("SIGKILL");
    await killed.proc.exited;
    tally("faults");
    expect(existsSync(join(thing.root, "data", "flashlex.sock"))).toBe(true);
    const { out } = await python(`
sdk = FlashlexSDK("config.yml")
waiting = sdk.getSubscribedMessages()
out({"running": sdk.serveIsRunning(), "waiting": [m["message"]["payload"]["message"]["n"] for m in waiting],
     "removed": sdk.removeMessageFromStore(waiting[0]), "sqliteOpened": len(sqlite_opened)})
`);
    expect(out).toEqual({ running: false, waiting: [5], removed: true, sqliteOpened: 2 });
  }, 20_000);

  test("a serve that goes away under a call (a restart): a read goes on from the database; an ack it may have made is try-later saying so (both were unavailable, 69)", async () => {
    const listed = (await storedIngress("--all")).length;
    const socket = socketPath(thing.dataDir);
    // answers the status probe, then hangs up on the call and stops listening: serve stopping mid-call
    const goingAway = () => {
      const server = createServer((req, res) => {
        if (req.url === "/v1/status") return res.end(JSON.stringify({ ok: true, result: {} }));
        req.socket.destroy();
        server.close();
      });
      return new Promise<void>((ok) => server.listen(socket, ok));
    };
    try {
      rmSync(socket, { force: true }); // a socket file a killed serve left (an earlier test's)
      await goingAway();
      tally("faults");
      const { out } = await python(`
sdk = FlashlexSDK("config.yml")
out({"listed": len(sdk.getSubscribedMessages(state="all"))})
`);
      expect(out).toEqual({ listed });
      rmSync(socket, { force: true });
      await goingAway();
      const { out: acked } = await python(`
sdk = FlashlexSDK("config.yml")
out({"ack": error(lambda: sdk.acknowledgeMessage({"pk": 1}))})
`);
      expect(acked).toEqual({
        ack: { kind: "try-later", exitCode: 75, message: expect.stringMatching(/: it went away with the request, which may have been done; list to see$/) },
      });
    } finally {
      rmSync(socket, { force: true });
    }
  }, 30_000);

  test("a serve that listens but does not answer (SIGSTOP) is try-later (75) within 6 s, as for the agent's commands (was 69 after 30 s)", async () => {
    const stopped = start(["serve", ...thing.flags]);
    await stopped.waitFor(/serve\.started/);
    stopped.proc.kill("SIGSTOP");
    try {
      tally("faults");
      const started = performance.now();
      const { out } = await python(`
sdk = FlashlexSDK("config.yml")
out({"list": error(lambda: sdk.getSubscribedMessages()), "ack": error(lambda: sdk.acknowledgeMessage({"pk": 1})), "running": sdk.serveIsRunning()})
`);
      expect(performance.now() - started).toBeLessThan(40_000); // three calls of at most ~6 s each
      const busy = { kind: "try-later", exitCode: 75, message: expect.stringMatching(/did not answer within 6 s \(busy, or stopped\); try again$/) };
      expect(out).toEqual({ list: busy, ack: busy, running: false });
    } finally {
      stopped.proc.kill("SIGCONT");
      await stopped.stop();
    }
  }, 60_000);

  test("a lone surrogate travels as the \\ud800 escape with serve stopped and running alike (200 both ways); count 0 is all, as in the old SDK; a wrong count or topic is 64 both ways", async () => {
    const app = (label: string) => `
sdk = FlashlexSDK("config.yml")
out({"running": sdk.serveIsRunning(),
     "status": sdk.collectMessage({"label": "${label}", "lone": "\\ud800", "pair": "\\ud83d\\ude00", "\\udfff": 1}),
     "zero": len(sdk.getSubscribedMessages(count=0, state="all")), "every": len(sdk.getSubscribedMessages(state="all")),
     "one": len(sdk.getSubscribedMessages(count=1, state="all")),
     "badCount": error(lambda: sdk.getSubscribedMessages(count="2")), "badTopic": error(lambda: sdk.getSubscribedMessages(topic=5))})
`;
    const stopped = (await python(app("surrogate-stopped"))).out;
    serve = start(["serve", ...thing.flags]);
    await serve.waitFor(/serve\.started/);
    let running: any;
    try {
      running = (await python(app("surrogate-running"))).out;
    } finally {
      expect(await serve.stop()).toBe(0);
      serve = undefined;
    }
    tally("badInputs", 6);
    expect([stopped.running, running.running]).toEqual([false, true]);
    for (const out of [stopped, running]) {
      expect(out.status).toBe(200);
      expect(out.every).toBeGreaterThanOrEqual(2);
      expect([out.zero, out.one]).toEqual([out.every, 1]);
      expect(out.badCount).toEqual({ kind: "usage", exitCode: 64, message: "count must be a whole number (0 or below: all), not '2'" });
      expect(out.badTopic).toEqual({ kind: "usage", exitCode: 64, message: "topic must be a string, not 5" });
    }
    const stored = await egress();
    for (const label of ["surrogate-stopped", "surrogate-running"]) {
      expect(stored.find((m) => m.payload?.label === label)?.payload).toEqual({ label, lone: "\ud800", pair: "\u{1F600}", "\udfff": 1 });
    }
    await expectStoredOnce(["surrogate-stopped", "surrogate-running"]);
  }, 30_000);

  test("the small YAML reader reads the distribution's config.yml exactly as PyYAML does", async () => {
    const { out } = await python(`
import flashlex, yaml
text = open("config.yml").read()
out({"same": flashlex._SimpleYaml("config.yml", text).parse() == yaml.safe_load(text)})
`);
    expect(out.same).toBe(true);
  });
});
