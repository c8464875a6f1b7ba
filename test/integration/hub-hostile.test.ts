/**
 * The compiled hub under hostile input, on loopback: one `hub serve` (embedded broker) started
 * with umask 000, a thing provisioned as a user would, and a real MQTT client with its
 * certificate.
 *
 *   files           hub.db and its -wal/-shm are 0600 after init and serve (umask 000, and a
 *                   0644 database left by an older version); `hub export` writes its zip 0600
 *   JSON limits     too deep (65 and 100,000 levels) is a 400, too large a 413, in the envelope;
 *                   a client that sends a 20 MB body before it reads (urllib) reads the 413 or
 *                   401; `hub send` and the thing's `collect` exit 65 and queue nothing
 *   MQTT refusals   envelopes the hub cannot take are acknowledged (PUBACK) and dropped with a
 *                   WARN; the sender stays connected
 *   log             ESC, NUL, BEL in a request path, an MQTT client id and a topic reach the log
 *                   escaped, never raw; every refusal of an HTTP caller names its address
 *   archive         ~150 MB of messages stream out as a valid zip while the hub's peak RSS grows by
 *                   far less than the data; `hub export` of the same is complete and valid
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type KeyObject, randomBytes, randomUUID, sign } from "node:crypto";
import { chmodSync, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { sqlHubStore } from "../../src/hub/store/sql-hub-store.ts";
import { sqliteHubSql } from "../../src/hub/store/sqlite-driver.ts";
import { openSqlDatabase } from "../../src/shared/sqlite/open.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { provisionThing } from "../support/distribution.ts";
import { listenOnLoopback, loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { tally } from "../support/tally.ts";
import { waitForLog } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-hostile-"));
const hubDir = join(work, "hub");
const database = join(hubDir, "hub.db");
/** Runs the binary with umask 000: whatever it creates is exactly the mode it asks for. */
const UMASK_000 = ["sh", "-c", 'umask 000 && exec "$0" "$@"'];
let apiPort = 0;
let brokerPort = 0;
let operatorToken = "";
let hub: Background;
const clients: MqttClient[] = [];

interface Thing {
  id: string;
  name: string;
  flags: string[];
  dataDir: string;
  certPem: string;
  privateKeyPem: string;
  privateKey: KeyObject;
  caPem: string;
}
let A: Thing;
/** the thing whose ~150 MB of messages the archive test downloads */
let bulk: { id: string; name: string };
const BULK_MESSAGES = 6_000;
const BULK_BLOB_BYTES = 24 * 1024;
let bulkBytes = 0;

async function hubCli(args: string[], opts: { input?: string; umask000?: boolean } = {}) {
  return run(args, { input: opts.input, timeoutMs: 60_000, command: opts.umask000 ? [...UMASK_000, binaryPath()] : undefined });
}

async function ok(args: string[], opts: { input?: string; umask000?: boolean } = {}) {
  const result = await hubCli(args, opts);
  if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

const provision = (shortName: string): Promise<Thing> => provisionThing(ok, hubDir, work, shortName);

const api = (path: string) => `http://127.0.0.1:${apiPort}/dev/v1${path}`;

async function request(method: string, path: string, opts: { token?: string; body?: string } = {}) {
  const response = await fetch(api(path), {
    method,
    headers: { ...(opts.token ? { Authorization: `Bearer ${opts.token}` } : {}), ...(opts.body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: opts.body,
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) };
}

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
const modeOf = (file: string) => statSync(file).mode & 0o777;

/** The hub's peak resident memory so far (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb) * 1024;
}

/** Connects as `thing` (its certificate), under `clientId`; no retries. */
function connect(thing: Thing, clientId = thing.name): Promise<{ client?: MqttClient; error?: Error }> {
  return new Promise((resolve) => {
    const client = mqtt.connect({
      protocol: "mqtts",
      host: "127.0.0.1",
      port: brokerPort,
      ca: thing.caPem,
      cert: thing.certPem,
      key: thing.privateKeyPem,
      rejectUnauthorized: true,
      clientId,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    clients.push(client);
    const timer = setTimeout(() => resolve({ error: new Error("no CONNACK within 6 s") }), 6_000);
    client.once("connect", () => (clearTimeout(timer), resolve({ client })));
    client.once("error", (error) => (clearTimeout(timer), resolve({ error })));
  });
}

/** A token signed with the thing's key over any header and claims (jose refuses to sign some). */
function signedToken(thing: Thing, header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  return `${input}.${sign("sha256", Buffer.from(input), thing.privateKey).toString("base64url")}`;
}

process.once("exit", () => hub?.proc.exitCode === null && hub.proc.kill("SIGKILL"));

beforeAll(async () => {
  binaryPath();
  [apiPort, brokerPort] = [await freePort(), await freePort()];
  const init = await ok([...loopbackHubInit(hubDir, apiPort, brokerPort, "127.0.0.1"), "--json"], { umask000: true });
  operatorToken = JSON.parse(init.stdout).token;
  listenOnLoopback(hubDir);
  A = await provision("a");
  bulk = JSON.parse((await ok(["hub", "thing", "create", "bulk", "--dir", hubDir, "-o", join(work, "bulk.zip"), "--json"])).stdout);

  // ~150 MB of egress for `bulk`, stored directly through the hub store (no fsync per row).
  const db = openSqlDatabase(database);
  db.exec("PRAGMA synchronous = OFF");
  const store = sqlHubStore(sqliteHubSql(db));
  const first = Math.floor(Date.now() / 1000) - BULK_MESSAGES;
  for (let i = 0; i < BULK_MESSAGES; i++) {
    const payload = JSON.stringify({ seq: i, blob: randomBytes((BULK_BLOB_BYTES * 3) / 4).toString("base64") });
    bulkBytes += payload.length;
    await store.insertMessage({
      flmessagespk: randomUUID(),
      thingId: bulk.id,
      messagetype: "egress",
      payload,
      fltimestamp: first + i,
      datecreated: new Date((first + i) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
    });
  }
  await store.close();

  // As an older hub left it: world-readable.
  chmodSync(database, 0o644);
  hub = start(["hub", "serve", "--dir", hubDir], { command: [...UMASK_000, binaryPath()] });
  await hub.waitFor(/hub\.started/, 30_000);
}, 180_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => Promise.race([c.endAsync(true).catch(() => {}), Bun.sleep(1_000)])));
  if (hub) expect(await hub.stop(5_000)).toBe(0);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("files only the owner may read", () => {
  test("hub.db, -wal and -shm are 0600 while the hub serves (umask 000; the 0644 file was narrowed at open)", async () => {
    // A write, so the WAL holds something.
    const token = await signThingToken({ thingId: A.id, privateKey: A.privateKey });
    expect((await request("POST", `/things/${A.id}/collect`, { token, body: '{"t":1}' })).status).toBe(200);
    for (const file of [database, `${database}-wal`, `${database}-shm`]) {
      expect(existsSync(file), file).toBe(true);
      expect(modeOf(file), file).toBe(0o600);
    }
  });

  test("`hub init` under umask 000 made hub.db 0600 from the start", async () => {
    const dir = join(work, "second-hub");
    await ok(["hub", "init", "--dir", dir, "--json"], { umask000: true });
    expect(modeOf(join(dir, "hub.db"))).toBe(0o600);
    for (const suffix of ["-wal", "-shm"]) if (existsSync(join(dir, `hub.db${suffix}`))) expect(modeOf(join(dir, `hub.db${suffix}`))).toBe(0o600);
    // narrowing only: an operator's `chmod 400 hub.db` is not widened back to 0600 by the next command
    chmodSync(join(dir, "hub.db"), 0o400);
    await ok(["hub", "thing", "list", "--dir", dir]);
    expect(modeOf(join(dir, "hub.db"))).toBe(0o400);
  }, 30_000);
});

describe("JSON limits at every door", () => {
  test("HTTP: 65 and 100,000 levels are a 400, 400 KiB a 413, all in the envelope; the hub stays up", async () => {
    const token = () => signThingToken({ thingId: A.id, privateKey: A.privateKey });
    for (const body of [nested(65), nested(100_000)]) {
      const answer = await request("POST", `/things/${A.id}/collect`, { token: await token(), body });
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ status: "ERROR", code: 400, result: null });
    }
    const publish = await request("POST", `/things/${A.id}/publish`, { token: operatorToken, body: `{"message":${nested(100_000)}}` });
    expect(publish.status).toBe(400);
    const large = await request("POST", `/things/${A.id}/collect`, { token: await token(), body: JSON.stringify({ blob: "x".repeat(400 * 1024) }) });
    expect(large).toMatchObject({ status: 413, body: { status: "ERROR", code: 413 } });
    expect((await request("GET", "/things", { token: operatorToken })).status).toBe(200);
    expect(hub.output()).not.toContain("hub.api_failed");
    tally("badInputs", 4);
  }, 30_000);

  test("a client that writes its whole body before reading (Python's urllib) reads the 413 or 401 of a 20 MB body, not a reset", async () => {
    // urllib sends the body, then reads the answer: before the hub read the rest of a body it
    // refused, it got "[Errno 32] Broken pipe" in place of the answer, from ~20 MB on loopback.
    const script = `
import json, sys, urllib.request
api, thing, thing_token, operator_token = sys.argv[1:5]
body = json.dumps({"message": "x" * 20_000_000}).encode()
for path, token in [("/publish", operator_token), ("/things/%s/collect" % thing, thing_token), ("/things/%s/collect" % thing, "not.a.token")]:
    request = urllib.request.Request(api + path, data=body, method="POST", headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
        print(path, "accepted")
    except urllib.error.HTTPError as answer:
        print(answer.code, json.loads(answer.read())["messages"][0]["value"])
    except OSError as err:
        print(path, "failed:", err)
`;
    const token = await signThingToken({ thingId: A.id, privateKey: A.privateKey });
    const python = Bun.spawn(["/usr/bin/python3", "-I", "-c", script, api(""), A.id, token, operatorToken], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(python.stdout).text(), new Response(python.stderr).text(), python.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out.trim().split("\n")).toEqual([
      expect.stringMatching(/^413 the body is larger than \d+ bytes$/),
      "413 the body is larger than 262144 bytes",
      "401 the thing token was refused",
    ]);
    expect((await request("GET", "/things", { token: operatorToken })).status).toBe(200);
    tally("badInputs", 3);
  }, 60_000);

  test("`hub send` with a 100,000-deep document exits 65 and sends nothing", async () => {
    const before = (await request("GET", `/things/${A.id}/messages?messagetype=ingress`, { token: operatorToken })).body.result.length;
    const result = await hubCli(["hub", "send", A.name, "--dir", hubDir], { input: nested(100_000) });
    expect(result.code).toBe(65);
    expect(result.stderr).toContain("nested more than 64 levels");
    expect((await request("GET", `/things/${A.id}/messages?messagetype=ingress`, { token: operatorToken })).body.result.length).toBe(before);
    tally("badInputs");
  }, 30_000);

  test("the thing's `collect` with 65 and 100,000 levels exits 65 and queues nothing", async () => {
    for (const depth of [65, 100_000]) {
      const result = await run(["collect", ...A.flags], { input: nested(depth), timeoutMs: 30_000 });
      expect(result.code).toBe(65);
      expect(result.stderr).toContain("nothing was queued");
    }
    const dbFile = join(A.dataDir, "messages.db");
    if (existsSync(dbFile)) {
      const db = openSqlDatabase(dbFile, { readonly: true });
      expect(db.get<{ n: number }>("SELECT COUNT(*) AS n FROM outbox")!.n).toBe(0);
      db.close();
    }
    tally("badInputs", 2);
  }, 60_000);
});

describe("MQTT: what the hub cannot take is acknowledged and dropped", () => {
  test("each bad envelope gets its PUBACK and one WARN; the sender stays connected; a good one is then stored", async () => {
    const { client, error } = await connect(A);
    if (!client) throw error;
    const token = await signThingToken({ thingId: A.id, privateKey: A.privateKey });
    const envelope = (fields: Record<string, unknown>) => JSON.stringify({ messageId: randomUUID(), thingId: A.id, token, payload: { t: 1 }, ...fields });
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: `urn:thing:${A.id}`, aud: `urn:flashlex:${A.id}`, nbf: now - 60, exp: now + 300, iat: now };
    const bad: [string, string | Buffer][] = [
      ["a crit header jose does not know", envelope({ token: signedToken(A, { alg: "RS256", kid: A.id, typ: "JWT", crit: ["zzz"], zzz: 1 }, claims) })],
      ["a forged token", envelope({ token: "abc.def.ghi" })],
      [
        "an expired token",
        envelope({ token: signedToken(A, { alg: "RS256", kid: A.id, typ: "JWT" }, { ...claims, nbf: now - 4000, iat: now - 4000, exp: now - 3600 }) }),
      ],
      ["100,000 levels deep", nested(100_000)],
      ["a payload 65 levels deep", `{"messageId":"${randomUUID()}","thingId":"${A.id}","token":"${token}","payload":${nested(65)}}`],
      ["not JSON", "not json"],
      ["not UTF-8", Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
      ["another thing's id", envelope({ thingId: bulk.id })],
      ["an unknown thing's id", envelope({ thingId: randomUUID() })],
    ];
    const before = (await request("GET", `/things/${A.id}/messages`, { token: operatorToken })).body.result.length;
    for (const [what, payload] of bad) {
      const from = hub.output().length;
      // publishAsync resolves on the PUBACK; a refusal would close the connection instead.
      await Promise.race([
        client.publishAsync("flashlex/collect", payload, { qos: 1 }),
        Bun.sleep(5_000).then(() => Promise.reject(new Error(`no PUBACK for ${what}`))),
      ]);
      expect(client.connected, what).toBe(true);
      await waitForLog(hub, /WARN {2}hub\.(collect|publish)_(dropped|refused) [^\n]*\n/, from);
      expect(
        hub
          .output()
          .slice(from)
          .match(/WARN {2}hub\.(collect|publish)_(dropped|refused)/g),
        what,
      ).toHaveLength(1);
      tally("attacks");
    }
    const good = randomUUID();
    await client.publishAsync("flashlex/collect", envelope({ messageId: good }), { qos: 1 });
    const stored = (await request("GET", `/things/${A.id}/messages`, { token: operatorToken })).body.result.map(
      (m: { flmessagespk: string }) => m.flmessagespk,
    );
    expect(stored).toHaveLength(before + 1);
    expect(stored).toContain(good);
    expect(hub.output()).not.toContain("mqtt.publish.store.failed");
  }, 60_000);
});

describe("control bytes never reach the log raw", () => {
  test("ESC, NUL, BEL in a request path, an MQTT client id and a topic are logged as \\u escapes", async () => {
    const from = hub.output().length;
    const token = await signThingToken({ thingId: A.id, privateKey: A.privateKey });
    const answer = await fetch(api(`/things/%1B%5B31m%00%07${A.id}/collect`), {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: "{}",
    });
    expect(answer.status).toBe(401);
    await waitForLog(hub, /hub\.collect_refused [^\n]*thing_id="\\u001b\[31m\\u0000\\u0007/, from);

    const refused = await connect(A, "\u001b[2J\u0007evil");
    expect(refused.client).toBeUndefined();
    await waitForLog(hub, /mqtt\.connect\.refused [^\n]*clientId="\\u001b\[2J\\u0007evil"/, from);

    const { client, error } = await connect(A);
    if (!client) throw error;
    const granted = await client.subscribeAsync("ingress/\u001b]0;owned\u0007", { qos: 1 }).then(
      (g) => g[0]?.qos,
      (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0],
    );
    expect(granted).toBe(128);
    await waitForLog(hub, /mqtt\.subscribe\.refused [^\n]*topic="ingress\/\\u001b\]0;owned\\u0007"/, from);

    // Nothing anywhere in the hub's output is a control character other than the line breaks.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must not reach the log
    expect(hub.output()).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/);
    tally("attacks", 3);
  }, 30_000);
});

describe("refusals of HTTP callers name their address (remote=), as the broker's refusals do", () => {
  test("a wrong operator token (API and update routes), a refused thing token, download token, enrolment and console sign-in", async () => {
    const from = hub.output().length;
    // [the event, the status (an enrolment token that is not one is the request's fault: 400), the request]
    const refusals: [string, number, () => Promise<Response>][] = [
      ["hub.operator_refused", 401, () => fetch(api("/things"), { headers: { Authorization: "Bearer not-the-token" } })],
      ["hub.operator_refused", 401, () => fetch(api("/updates"), { headers: { Authorization: "Bearer not-the-token" } })],
      ["hub.collect_refused", 401, () => fetch(api(`/things/${A.id}/collect`), { method: "POST", headers: { Authorization: "Bearer x.y.z" }, body: "{}" })],
      ["hub.update_refused", 401, () => fetch(api(`/things/${A.id}/update?version=1.0.0&target=linux-x64`), { headers: { Authorization: "Bearer x.y.z" } })],
      ["hub.thing_refused", 401, () => fetch(api(`/things/${A.id}/certificate`), { headers: { Authorization: "Bearer x.y.z" } })],
      ["hub.download_refused", 401, () => fetch(api(`/things/${A.id}/dist`), { headers: { Authorization: `Bearer flxd_${"0".repeat(43)}` } })],
      [
        "hub.enrol_refused",
        400,
        () =>
          fetch(api("/enroll"), {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ token: "flxe_nope", name: "x", csr: "x" }),
          }),
      ],
      [
        "hub.console_signin_refused",
        401,
        () =>
          fetch(`http://127.0.0.1:${apiPort}/signin`, {
            method: "POST",
            headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: `http://127.0.0.1:${apiPort}` },
            body: "token=not-the-token",
          }),
      ],
    ];
    for (const [event, status, send] of refusals) {
      const answer = await send();
      await answer.arrayBuffer();
      expect({ event, status: answer.status }).toEqual({ event, status });
      await waitForLog(hub, new RegExp(`${event.replace(".", "\\.")} [^\\n]*remote=127\\.0\\.0\\.1`), from);
      tally("attacks");
    }
    expect(hub.output().slice(from)).not.toContain("not-the-token");
  }, 60_000);
});

describe("the archive streams", () => {
  test(`${BULK_MESSAGES} messages (~150 MB) download as a complete, valid zip; the hub's peak RSS grows by far less than the data`, async () => {
    const pid = hub.proc.pid;
    // A first, small archive: what every archive costs once (code compiled, zlib and the stream
    // machinery in use) is not what this test is about.
    const warmUp = await fetch(api(`/things/${A.id}/archive`), { headers: { Authorization: `Bearer ${operatorToken}` } });
    expect(warmUp.status).toBe(200);
    await warmUp.arrayBuffer();
    const before = peakRss(pid);
    const zipFile = join(work, "bulk-archive.zip");
    const response = await fetch(api(`/things/${bulk.id}/archive`), {
      headers: { Authorization: `Bearer ${operatorToken}` },
      signal: AbortSignal.timeout(120_000),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/zip");
    const out = createWriteStream(zipFile);
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      if (!out.write(chunk)) await new Promise((resolve) => out.once("drain", resolve));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const growth = peakRss(pid) - before;
    console.log(
      `archive: ${(bulkBytes / 1e6).toFixed(1)} MB of payloads, zip ${(statSync(zipFile).size / 1e6).toFixed(1)} MB, hub peak RSS ${(before / 1e6).toFixed(0)} MB -> +${(growth / 1e6).toFixed(1)} MB`,
    );
    expect(bulkBytes).toBeGreaterThan(140e6);
    expect(growth).toBeLessThan(bulkBytes / 2);

    const check = Bun.spawnSync(["unzip", "-tq", zipFile]);
    expect(check.exitCode, check.stdout.toString() + check.stderr.toString()).toBe(0);
    const listing = Bun.spawnSync(["unzip", "-Z1", zipFile]).stdout.toString().trim().split("\n");
    expect(listing).toHaveLength(BULK_MESSAGES);
    const last = JSON.parse(Bun.spawnSync(["unzip", "-p", zipFile, listing[listing.length - 1]!]).stdout.toString());
    expect(last).toMatchObject({ flthingspk: bulk.id, messagetype: "egress", payload: { seq: BULK_MESSAGES - 1 } });
    expect(last.payload.blob).toHaveLength(BULK_BLOB_BYTES);
  }, 120_000);

  test("`hub export` (umask 000) writes the same messages to a 0600 zip and leaves no temporary file", async () => {
    const dir = join(work, "export");
    await ok(["hub", "thing", "list", "--dir", hubDir]); // the CLI opens the database beside the running hub
    rmSync(dir, { recursive: true, force: true });
    Bun.spawnSync(["mkdir", "-p", dir]);
    const file = join(dir, "bulk.zip");
    const result = await ok(["hub", "export", bulk.name, "--dir", hubDir, "-o", file], { umask000: true });
    expect(result.stdout).toContain(`${BULK_MESSAGES} messages`);
    expect(modeOf(file)).toBe(0o600);
    expect(Bun.spawnSync(["ls", "-A", dir]).stdout.toString().trim()).toBe("bulk.zip");
    expect(Bun.spawnSync(["unzip", "-tq", file]).exitCode).toBe(0);
    expect(Bun.spawnSync(["unzip", "-Z1", file]).stdout.toString().trim().split("\n")).toHaveLength(BULK_MESSAGES);
    // piped on (`-o /dev/stdout | ssh host 'cat > x.zip'`): the summary line went after the zip and broke it
    const piped = join(dir, "piped.zip");
    const toStdout = Bun.spawnSync(["sh", "-c", `"$0" hub export "$1" --dir "$2" -o /dev/stdout > "$3"`, binaryPath(), bulk.name, hubDir, piped]);
    expect(toStdout.exitCode).toBe(0);
    expect(toStdout.stderr.toString()).toBe(`/dev/stdout: ${BULK_MESSAGES} messages\n`);
    expect(Bun.spawnSync(["unzip", "-tq", piped]).exitCode).toBe(0);
  }, 120_000);
});
