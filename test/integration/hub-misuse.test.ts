/**
 * The compiled hub as a new user tried it and tried to break it, on loopback: one hub home with
 * one thing, one `hub serve` (embedded broker), raw sockets and real MQTT clients.
 *
 *   hang-up         a client that closes the connection part way through a request body is one
 *                   INFO line (hub.request_abandoned), never an ERROR of kind bug, on every
 *                   route that reads a body; the hub answers on
 *   hub.db          a home whose hub.db is gone is a 78 for every hub command but init, naming
 *                   the file and the backup, and no command makes a new empty one; a damaged
 *                   hub.db is a 74 that says to restore the backup, not to move it aside
 *   listen          an API port in use, a broker address not on this machine, a payload limit
 *                   too large: 78 with one line naming the address or key and hub.yml
 *   signals         SIGTERM/SIGINT part way through `hub export` or `hub init` exit 143/130 with
 *                   one line and leave no temporary file or directory; what a SIGKILLed one left
 *                   is removed by the next run (a live process's is not); SIGTERM while `hub
 *                   serve` starts stops it cleanly once started (exit 0, its socket gone)
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { type AddressInfo, createServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseDocument } from "yaml";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { hasUnsafeCharacters } from "../../src/shared/log.ts";
import { userLabel } from "../../src/shared/passwd.ts";
import { ordinaryAccount } from "../support/accounts.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { tally } from "../support/tally.ts";
import { occurrences, waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-misuse-"));
let hub: HubFixture;
let serving: Background;
let thing: HubThing;
/** egress stored for `thing` before the hub starts: an export of it takes a while (~30 MB of zip) */
const STORED_MESSAGES = 2_000;

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
  thing = await hub.createThing("misused");
  const store = await openHubStore(join(hub.dir, "hub.db"));
  const first = Math.floor(Date.now() / 1000) - STORED_MESSAGES;
  for (let i = 0; i < STORED_MESSAGES; i++) {
    await store.insertMessage({
      flmessagespk: randomUUID(),
      thingId: thing.id,
      messagetype: "egress",
      payload: JSON.stringify({ seq: i, blob: randomBytes(12 * 1024).toString("base64") }),
      fltimestamp: first + i,
      datecreated: new Date((first + i) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
    });
  }
  await store.close();
  serving = await hub.serve();
}, 120_000);

afterAll(async () => {
  if (serving) expect(await serving.stop(5_000)).toBe(0);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

/**
 * Sends a request head declaring a 100-byte body, then 13 bytes of it, then closes the socket
 * once they are written.
 */
function hangUpMidBody(path: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(hub.apiPort, "127.0.0.1", () => {
      const head = [`POST /dev/v1${path} HTTP/1.1`, "Host: 127.0.0.1", "Content-Type: application/json", "Content-Length: 100"];
      for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
      socket.write(`${head.join("\r\n")}\r\n\r\n{"message":1,`, () => socket.destroy());
    });
    socket.on("close", () => resolve());
    socket.on("error", reject);
  });
}

describe("a client that hangs up part way through its body", () => {
  test("publish, collect and POST /things: one INFO hub.request_abandoned each, no ERROR, no kind=bug; the hub answers on", async () => {
    const from = serving.output().length;
    const operator = { Authorization: `Bearer ${hub.token}` };
    const cases: [string, () => Promise<Record<string, string>>][] = [
      [`/things/${thing.id}/publish`, async () => operator],
      [`/things/${thing.id}/collect`, async () => ({ Authorization: `Bearer ${await signThingToken({ thingId: thing.id, privateKey: thing.privateKey })}` })],
      ["/things", async () => operator],
    ];
    for (const [path, headers] of cases) await hangUpMidBody(path, await headers());
    const log = () => serving.output().slice(from);
    await waitUntil("three hub.request_abandoned lines", () => occurrences(log(), /hub\.request_abandoned/) === 3, 10_000, log);
    for (const route of ["things/:id/publish", "things/:id/collect", "things"]) {
      expect(log()).toMatch(
        new RegExp(`INFO  hub\\.request_abandoned component=api method=POST route=${route.replace(/[/:]/g, "\\$&")}( id=\\S+)? declared=100`),
      );
    }
    expect(log()).not.toContain("ERROR");
    expect(log()).not.toContain("kind=bug");
    expect(log()).not.toContain("hub.api_failed");
    // The hub is still there for the next caller.
    expect(await hub.publish(thing.id, { after: "hang-ups" })).toBeString();
    tally("attacks", cases.length);
  }, 30_000);
});

/** A copy of the fixture's hub home (without its socket), for a test that breaks it. */
function copyOfHome(name: string): string {
  const copy = join(work, name);
  cpSync(hub.dir, copy, { recursive: true, filter: (source) => !source.endsWith("hub.sock") });
  return copy;
}

/** A copy of the home whose hub.yml says `changes` (key path → value), with its own free ports. */
async function homeListeningOn(name: string, changes: [string[], unknown][]): Promise<string> {
  const home = copyOfHome(name);
  const file = join(home, "hub.yml");
  const settings = parseDocument(readFileSync(file, "utf8"));
  settings.setIn(["hub", "api", "port"], await freePort());
  settings.setIn(["hub", "broker", "listenPort"], await freePort());
  for (const [path, value] of changes) value === undefined ? settings.deleteIn(path) : settings.setIn(path, value);
  writeFileSync(file, settings.toString());
  return home;
}

describe("an address hub serve cannot listen on", () => {
  test("the API's port in use, an address not on this machine or a name that does not resolve: 78, one line naming the address and the hub.yml settings", async () => {
    const holder = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => holder.once("listening", resolve));
    const busyPort = (holder.address() as AddressInfo).port;
    const sharedPort = await freePort();
    try {
      const cases: [string, [string[], unknown][], string][] = [
        // two of the hub's own on one port: both settings named, not "stop what listens there" (new-user pass 24, F1)
        [
          "own-api-and-broker",
          [
            [["hub", "broker", "listenPort"], undefined],
            [["hub", "broker", "port"], sharedPort],
            [["hub", "api", "port"], sharedPort],
          ],
          `the API (hub.api.host and hub.api.port) and the broker (hub.broker.listenHost and hub.broker.port) in `,
        ],
        [
          "own-api-and-metrics",
          [
            [["hub", "metrics", "listen"], `127.0.0.1:${sharedPort}`],
            [["hub", "api", "port"], sharedPort],
          ],
          `would both listen on 127.0.0.1:${sharedPort}: the hub opens each itself; give each its own port`,
        ],
        ["busy-api", [[["hub", "api", "port"], busyPort]], `the API cannot listen on 127.0.0.1:${busyPort} (hub.api.host and hub.api.port in `],
        ["absent-broker-host", [[["hub", "broker", "listenHost"], "192.0.2.1"]], "the broker cannot listen on 192.0.2.1:"],
        // no listenPort: the port is hub.broker.port's, and the line names that key
        [
          "busy-broker-port",
          [
            [["hub", "broker", "listenPort"], undefined],
            [["hub", "broker", "listenHost"], "127.0.0.1"],
            [["hub", "broker", "port"], busyPort],
          ],
          `the broker cannot listen on 127.0.0.1:${busyPort} (hub.broker.listenHost and hub.broker.port in `,
        ],
        // names that do not resolve, bracketed IPv6, addresses no interface has: each runtime
        // error a listen can end in (EINVAL, ENOENT, ENOTFOUND, a bare "Failed to listen")
        ["unresolved-api-host", [[["hub", "api", "host"], "nosuchhost.invalid"]], "nosuchhost.invalid is neither an address of this machine nor a name"],
        [
          "unresolved-broker-host",
          [[["hub", "broker", "listenHost"], "nosuchhost.invalid"]],
          "nosuchhost.invalid is neither an address of this machine nor a name",
        ],
        ["bracketed-broker-host", [[["hub", "broker", "listenHost"], "[::1]"]], "write an IPv6 address here without brackets"],
        ["impossible-metrics", [[["hub", "metrics", "listen"], "999.1.1.1:19465"]], "the metrics cannot listen on 999.1.1.1:19465 (hub.metrics.listen in "],
        ["link-local-metrics", [[["hub", "metrics", "listen"], "[fe80::1]:19465"]], "not an address this machine can listen on (EINVAL)"],
      ];
      for (const [name, changes, expected] of cases) {
        const home = await homeListeningOn(name, changes);
        const result = await run(["hub", "serve", "--dir", home], { timeoutMs: 30_000 });
        const errors = result.stderr.split("\n").filter((line) => line.startsWith("flashlex: "));
        expect(result.code, result.stderr).toBe(78);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(expected);
        expect(errors[0]).toContain(join(home, "hub.yml"));
        expect(existsSync(join(home, "hub.sock")), name).toBe(false);
      }
      tally("badInputs", cases.length);
    } finally {
      holder.close();
    }
  }, 60_000);

  test("the home removed, or hub.db replaced, under a running hub: it stops with 74 and one line, instead of acknowledging into a deleted file", async () => {
    for (const [name, act, said] of [
      ["removed-home", (home: string) => rmSync(home, { recursive: true, force: true }), "the hub home"],
      [
        "replaced-db",
        (home: string) => {
          // a restore from a backup while the hub runs: a new file under the old name
          cpSync(join(home, "hub.db"), join(home, "hub.db.new"));
          renameSync(join(home, "hub.db.new"), join(home, "hub.db"));
        },
        "hub.db was removed or replaced while the hub ran",
      ],
    ] as const) {
      const home = await homeListeningOn(name, []);
      const serving = start(["hub", "serve", "--dir", home]);
      try {
        await serving.waitFor(/hub\.started/, 30_000);
        act(home);
        expect(await serving.proc.exited, serving.output()).toBe(74);
        const errors = serving
          .output()
          .split("\n")
          .filter((line) => line.startsWith("flashlex: "));
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(said);
        expect(serving.output()).toContain("hub.home_gone");
      } finally {
        await serving.stop();
      }
    }
    tally("attacks", 2);
  }, 60_000);

  test("hub.yml rewritten in place of itself under a running hub (hub mosquitto-config, an editor's save) does not stop it (it stopped with 74, 'the hub home was removed'), and says the edit counts after a restart", async () => {
    const home = await homeListeningOn("rewritten-yml", []);
    const serving = start(["hub", "serve", "--dir", home]);
    try {
      await serving.waitFor(/hub\.started/, 30_000);
      const yml = join(home, "hub.yml");
      writeFileSync(`${yml}.new`, `${readFileSync(yml, "utf8")}# edited\n`);
      renameSync(`${yml}.new`, yml);
      await serving.waitFor(/hub\.config_changed/, 10_000); // the watches look once a second
      await Bun.sleep(1500);
      expect(serving.proc.exitCode).toBeNull();
      expect(serving.output()).not.toContain("hub.home_gone");
      expect(serving.output()).toMatch(new RegExp(`WARN +hub\\.config_changed config=${yml} fix="restart hub serve for the change to count"`));
      expect(serving.output()).toMatch(/INFO +hub\.started version="\d+\.\d+\.\d+\S* \(\w+\)" api=/);
    } finally {
      expect(await serving.stop()).toBe(0);
    }
  }, 60_000);

  test.skipIf(process.getuid?.() !== 0 || !Bun.which("setpriv"))(
    "another user's hub home (0700) is 77 saying whose it is, not 78 'not a hub home, run hub init'",
    async () => {
      const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
      const result = Bun.spawnSync([...asNobody, binaryPath(), "hub", "thing", "list", "--dir", hub.dir], { stdout: "pipe", stderr: "pipe" });
      const stderr = result.stderr.toString();
      expect({ code: result.exitCode, lines: stderr.trim().split("\n").length }).toEqual({ code: 77, lines: 1 });
      // here even its parent is 0700 (root's): that is the directory named (it said "the hub home is root's (0700)")
      expect(stderr).toBe(`flashlex: ${hub.dir}: permission denied: this user may not enter ${dirname(hub.dir)} (root's)\n`);
      // in a parent anyone may enter: the home's owner by name, and how to run as it
      const parent = mkdtempSync(join(tmpdir(), "flashlex-open-parent-"));
      chmodSync(parent, 0o755);
      try {
        const home = join(parent, "hub");
        cpSync(hub.dir, home, { recursive: true, filter: (source) => !source.endsWith("hub.sock") });
        chmodSync(home, 0o700);
        const closed = Bun.spawnSync([...asNobody, binaryPath(), "hub", "thing", "list", "--dir", home], { stdout: "pipe", stderr: "pipe" });
        expect({ code: closed.exitCode, stderr: closed.stderr.toString() }).toEqual({
          code: 77,
          stderr: `flashlex: ${home}: permission denied: the hub home is root's; run the command as that user (sudo flashlex ...)\n`,
        });
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
  );

  test.skipIf(process.getuid?.() !== 0 || !Bun.which("setpriv"))(
    "root on a service user's hub home acts as that user: what sudo hub thing create makes there is the user's, so the user's hub reads it (a root-owned 0600 zip was 77 for the user, 500 for the hub); an -o the user may not write is 77 before anything is made",
    async () => {
      const user = ordinaryAccount();
      const asUser = ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"];
      const parent = join(tmpdir(), `flashlex-service-user-${process.pid}`);
      mkdirSync(parent, { mode: 0o755 });
      try {
        const home = join(parent, "hub");
        cpSync(hub.dir, home, { recursive: true, filter: (source) => !source.endsWith("hub.sock") });
        // dists/ too is made afresh (a hub.sharedDir set after init has none)
        rmSync(join(home, "dists"), { recursive: true, force: true });
        execFileSync("chown", ["-R", `${user.uid}:${user.gid}`, parent]);
        const made = await run(["hub", "thing", "create", "by-root", "--dir", home, "-o", join(parent, "by-root.zip"), "--json"], { timeoutMs: 30_000 });
        expect(made.code, made.stderr).toBe(0);
        const { id } = JSON.parse(made.stdout) as { id: string };
        for (const path of [join(home, "dists"), join(home, "dists", `${id}.zip`), join(parent, "by-root.zip")]) {
          const { uid, gid } = statSync(path);
          expect({ path, uid, gid }).toEqual({ path, uid: user.uid, gid: user.gid });
        }
        const again = Bun.spawnSync([...asUser, binaryPath(), "hub", "thing", "dist", "by-root", "--dir", home, "-o", join(parent, "again.zip")], {
          stdout: "pipe",
          stderr: "pipe",
        });
        expect({ code: again.exitCode, stderr: again.stderr.toString() }).toEqual({ code: 0, stderr: "" });
        // a dists/ an older root-run version left root's (0700): 77 naming the zip, not "missing: create the thing again" (65)
        const zip = join(home, "dists", `${id}.zip`);
        execFileSync("chown", ["0:0", join(home, "dists")]);
        const unreadable = Bun.spawnSync([...asUser, binaryPath(), "hub", "thing", "dist", "by-root", "--dir", home, "-o", join(parent, "again.zip")], {
          stdout: "pipe",
          stderr: "pipe",
        });
        expect({ code: unreadable.exitCode, stderr: unreadable.stderr.toString() }).toMatchObject({ code: 77, stderr: expect.stringContaining(zip) });
        expect(unreadable.stderr.toString()).not.toContain("create the thing again");
        execFileSync("chown", [`${user.uid}:${user.gid}`, join(home, "dists")]);
        // root's own directory (0700): the user may not write there, said before the thing is made
        const refused = await run(["hub", "thing", "create", "nowhere", "--dir", home, "-o", join(work, "nowhere.zip")], { timeoutMs: 30_000 });
        expect({ code: refused.code, stderr: refused.stderr }).toEqual({
          code: 77,
          stderr: `flashlex: -o "${join(work, "nowhere.zip")}": may not write in ${work}; name a file in a directory this user may write (started by root, this hub command runs as ${user.name} (uid ${user.uid}), the owner of the hub home ${home})\n`, // no chown of the home: it would not help
        });
        // the default name in a working directory it may not write: refused before the thing is made too
        const inRootsDir = await run(["hub", "thing", "create", "nowhere", "--dir", home], { cwd: work, timeoutMs: 30_000 });
        // the file named as it would be: the hub's owner prefix, then the typed name (it said "<name>.zip")
        const prefix = /^flashlex: the output file .*\/([0-9a-f]{8})-nowhere\.zip: /.exec(inRootsDir.stderr)?.[1];
        expect({ code: inRootsDir.code, stderr: inRootsDir.stderr }).toEqual({
          code: 77,
          stderr: `flashlex: the output file ${work}/${prefix}-nowhere.zip: may not write in ${work}; pass -o FILE in a directory this user may write, or run the command from one (started by root, this hub command runs as ${user.name} (uid ${user.uid}), the owner of the hub home ${home})\n`,
        });
        const listed = await run(["hub", "thing", "list", "--dir", home]);
        expect(listed.stdout).not.toContain("nowhere");
        // -o - with stdout redirected to a file, as the user itself (it was 77: "may not write in /dev")
        const piped = Bun.spawnSync(
          ["sh", "-c", `exec "$0" "$@" > ${join(parent, "piped.zip")}`, ...asUser, binaryPath(), "hub", "thing", "dist", "by-root", "--dir", home, "-o", "-"],
          {
            stderr: "pipe",
          },
        );
        expect({ code: piped.exitCode, stderr: piped.stderr.toString() }).toEqual({ code: 0, stderr: "/dev/stdout\n" });
        expect(readFileSync(join(parent, "piped.zip")).subarray(0, 2).toString()).toBe("PK");
        // a port below 1024 in hub.yml: root started hub serve, but the user it runs as may not
        // bind it; the 78 says so (it said only "ports below 1024 need root", to root)
        if (Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8")) > 80) {
          const yml = join(home, "hub.yml");
          // the API's port (the first), and a free one for the broker (the hub of this describe holds its own)
          const brokerPort = await freePort();
          writeFileSync(
            yml,
            readFileSync(yml, "utf8")
              .replace(/(\n {4}port: )\d+/, "$180")
              .replace(/(broker:\n {4}host: \S+\n {4}port: )\d+/, `$1${brokerPort}`),
          );
          const served = await run(["hub", "serve", "--dir", home], { timeoutMs: 30_000 });
          expect({ code: served.code, stderr: served.stderr }).toMatchObject({
            code: 78,
            stderr: expect.stringContaining(
              `ports below 1024 need root or CAP_NET_BIND_SERVICE (started by root, this hub command runs as ${user.name} (uid ${user.uid}), the owner of the hub home ${home}: that user may not listen on a port below 1024: choose one above 1023 in hub.yml, or give the service CAP_NET_BIND_SERVICE)`,
            ),
          });
        }
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
    60_000,
  );

  test.skipIf(process.getuid?.() !== 0)(
    "root does not act on a home whose files another user may have put there: a root-owned home others may write in is 77; a home behind a link whose hub.yml is a user's is acted on as that user, so the files its hub.yml names stay as they were",
    async () => {
      const user = ordinaryAccount();
      const open = join(tmpdir(), `flashlex-open-home-${process.pid}`);
      const victim = join(work, "victim.pem");
      writeFileSync(victim, "root's own\n", { mode: 0o600 });
      try {
        cpSync(hub.dir, open, { recursive: true, filter: (source) => !source.endsWith("hub.sock") });
        chmodSync(open, 0o1777);
        const refused = await run(["hub", "thing", "list", "--dir", open]);
        expect({ code: refused.code, stderr: refused.stderr }).toMatchObject({
          code: 77,
          stderr: expect.stringContaining("others may write in it (mode 1777)"),
        });
        // the user's hub.yml in it, naming a root-only file as a CRL to write, behind a link
        const yml = join(open, "hub.yml");
        const settings = parseDocument(readFileSync(yml, "utf8"));
        settings.setIn(["hub", "broker", "crlFiles"], [victim]);
        writeFileSync(yml, settings.toString());
        execFileSync("chown", ["-R", `${user.uid}:${user.gid}`, ...readdirSync(open).map((n) => join(open, n))]);
        const link = join(work, "linked-home");
        symlinkSync(open, link);
        const revoked = await run(["hub", "thing", "revoke", thing.name, "--dir", link], { timeoutMs: 30_000 });
        expect(revoked.code).not.toBe(0);
        expect(readFileSync(victim, "utf8")).toBe("root's own\n");
        // a root-owned home (0700) whose dists/ a user was given: root would write zips through whatever the user put there
        const closed = join(work, "closed-home");
        cpSync(hub.dir, closed, { recursive: true, filter: (source) => !source.endsWith("hub.sock") });
        execFileSync("chown", [`${user.uid}:${user.gid}`, join(closed, "dists")]);
        // acted on as that user, who may not even enter the 0700 home: 77, saying as whom it ran
        const listed = await run(["hub", "thing", "list", "--dir", closed]);
        expect({ code: listed.code, stderr: listed.stderr }).toMatchObject({
          code: 77,
          stderr: expect.stringContaining(`this hub command runs as ${user.name} (uid ${user.uid})`),
        });
        execFileSync("chown", ["65534:65534", join(closed, "hub.yml")]);
        const mixed = await run(["hub", "thing", "list", "--dir", closed]);
        expect({ code: mixed.code, stderr: mixed.stderr }).toMatchObject({
          code: 77,
          stderr: expect.stringContaining(
            `the hub home and the way to it belong to several users (nobody (uid 65534) owns ${closed}/hub.yml; ${user.name} (uid ${user.uid}) owns ${closed}/dists)`,
          ),
        });
      } finally {
        rmSync(open, { recursive: true, force: true });
      }
    },
    60_000,
  );

  test.skipIf(process.getuid?.() !== 0)(
    "root never writes a zip into another user's FIFO (-o, or the default name in that user's directory): 77, no thing made (it wrote the private key into the user's pipe)",
    async () => {
      const user = ordinaryAccount();
      const theirs = mkdtempSync(join(tmpdir(), "flashlex-their-fifo-"));
      try {
        chownSync(theirs, user.uid, user.gid);
        const fifo = join(theirs, "catch.zip");
        execFileSync("mkfifo", ["-m", "666", fifo]);
        chownSync(fifo, user.uid, user.gid);
        const before = (await run(["hub", "thing", "list", "--dir", hub.dir, "--json"])).stdout;
        const refused = await run(["hub", "thing", "create", "fifo-catch", "--dir", hub.dir, "-o", fifo], { timeoutMs: 30_000 });
        expect({ code: refused.code, stderr: refused.stderr }).toEqual({
          code: 77,
          stderr: `flashlex: -o "${fifo}": ${fifo} is a FIFO of uid ${user.uid}, and what is written there (a thing's private key, messages) is never handed to another user's stream; name a new file\n`,
        });
        const link = join(theirs, "link.zip");
        symlinkSync(fifo, link);
        execFileSync("chown", ["-h", `${user.uid}:${user.gid}`, link]);
        const viaLink = await run(["hub", "thing", "create", "fifo-catch", "--dir", hub.dir, "-o", link], { timeoutMs: 30_000 });
        expect(viaLink.code).toBe(77);
        expect((await run(["hub", "thing", "list", "--dir", hub.dir, "--json"])).stdout).toBe(before);
      } finally {
        rmSync(theirs, { recursive: true, force: true });
      }
    },
  );

  test("payloadLimitBytes above 16 MiB is refused when hub.yml is read (78, naming the key)", async () => {
    const home = await homeListeningOn("huge-limit", [[["hub", "api", "payloadLimitBytes"], 2 ** 31]]);
    const result = await run(["hub", "serve", "--dir", home], { timeoutMs: 30_000 });
    expect(result.code, result.stderr).toBe(78);
    expect(result.stderr).toContain("hub.api.payloadLimitBytes");
    expect(result.stderr).toContain("16 MiB");
    tally("badInputs");
  }, 30_000);
});

describe("the TLS files hub serve serves", () => {
  test("an empty or damaged ca-key.pem, broker-key.pem or broker-cert.pem stops hub serve with 78 naming the file (an empty broker key started a hub whose every handshake failed; a bad CA key one that failed every create, enrolment and renewal)", async () => {
    const cases: [string, string, RegExp][] = [
      // the CA's key as well: a hub started without a usable one failed every create, enrolment, renewal and CRL
      ["ca-key.pem", "", /ca-key\.pem: not a PKCS#1, SEC1 or PKCS#8 private key/],
      ["broker-key.pem", "", /broker-key\.pem: not a PKCS#1, SEC1 or PKCS#8 private key/],
      ["broker-cert.pem", "", /broker-cert\.pem: not a PEM certificate/],
      ["broker-key.pem", readFileSync(join(hub.dir, "ca-key.pem"), "utf8"), /broker-key\.pem is not the private key of .*broker-cert\.pem/],
    ];
    for (const [file, content, message] of cases) {
      const home = await homeListeningOn(`tls-${file}-${content.length}`, []);
      writeFileSync(join(home, file), content);
      const result = await run(["hub", "serve", "--dir", home], { timeoutMs: 30_000 });
      expect(result.code, `${file} ${JSON.stringify(content.slice(0, 20))}: ${result.stderr}`).toBe(78);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toContain("hub.started");
      tally("faults");
    }
    // what an external broker is given is checked the same way: an empty key made a Mosquitto that refused every handshake
    const home = copyOfHome("tls-mosquitto-config");
    writeFileSync(join(home, "broker-key.pem"), "");
    const config = await run(["hub", "mosquitto-config", "--dir", home, "--out", join(work, "tls-mosquitto")], { timeoutMs: 30_000 });
    expect(config.code, config.stderr).toBe(78);
    expect(config.stderr).toMatch(/broker-key\.pem: not a PKCS#1, SEC1 or PKCS#8 private key/);
    expect(existsSync(join(work, "tls-mosquitto", "broker-key.pem"))).toBe(false);
  }, 90_000);
});

describe("a thing's distribution zip in dists/", () => {
  test("a FIFO in its place is refused, never opened for a blocking read: the API answers and goes on answering, `hub thing dist` is 78 naming the file (a FIFO held the hub's whole event loop, broker included)", async () => {
    const fifoThing = await hub.createThing("fifo-zip");
    const zip = join(hub.dir, "dists", `${fifoThing.id}.zip`);
    rmSync(zip);
    execFileSync("mkfifo", ["-m", "600", zip]);
    try {
      const operator = { Authorization: `Bearer ${hub.token}` };
      const api = `http://127.0.0.1:${hub.apiPort}/dev/v1`;
      const dist = await fetch(`${api}/things/${fifoThing.id}/dist`, { headers: operator, signal: AbortSignal.timeout(10_000) });
      expect(dist.status).toBe(500);
      expect((await fetch(`${api}/things`, { headers: operator, signal: AbortSignal.timeout(10_000) })).status).toBe(200);
      const cli = await run(["hub", "thing", "dist", fifoThing.name, "--dir", hub.dir, "-o", join(work, "fifo.zip")], { timeoutMs: 20_000 });
      expect(cli.code, cli.stderr).toBe(78);
      expect(cli.stderr).toBe(`flashlex: ${zip}: the distribution zip is not a regular file (a FIFO); it must be the file itself\n`);
    } finally {
      rmSync(zip, { force: true });
    }
    tally("faults", 2);
  }, 60_000);

  test("revoke and delete whose zip cannot be removed (a dists/ an older root run left root's): done, the CRL written, 77 saying it is done and which zip to remove (it said 'failed' after the commit, with no CRL: a retried delete found no thing)", async () => {
    const user = ordinaryAccount();
    // a parent the user may enter (the work directory is root's, 0700)
    const parent = join(tmpdir(), `flashlex-zip-stays-${process.pid}`);
    mkdirSync(parent, { mode: 0o755 });
    try {
      const home = join(parent, "hub");
      cpSync(hub.dir, home, { recursive: true, filter: (source) => !source.endsWith("hub.sock") });
      const made = await run(["hub", "thing", "create", "second", "--dir", home, "--json", "-o", join(work, "second.zip")], { timeoutMs: 30_000 });
      expect(made.code, made.stderr).toBe(0);
      const other = JSON.parse(made.stdout) as { id: string };
      execFileSync("chown", ["-R", `${user.uid}:${user.gid}`, home]);
      execFileSync("chown", ["0:0", join(home, "dists")]);
      const listed = async () => {
        const list = await run(["hub", "thing", "list", "--dir", home, "--json"], { timeoutMs: 30_000 });
        expect(list.code, list.stderr).toBe(0);
        return JSON.parse(list.stdout) as { id: string; status: string; certificateSerial: string }[];
      };
      const serials = Object.fromEntries((await listed()).map((t) => [t.id, t.certificateSerial]));
      const crlSerials = () => execFileSync("openssl", ["crl", "-in", join(home, "crl.pem"), "-noout", "-text"], { encoding: "utf8" });
      for (const [args, id, done] of [
        [["hub", "thing", "revoke", thing.name], thing.id, "revoked"],
        [["hub", "thing", "delete", other.id], other.id, "deleted"],
      ] as const) {
        const zip = join(home, "dists", `${id}.zip`);
        const result = await run([...args, "--dir", home], { timeoutMs: 30_000 });
        expect(result.code, result.stderr).toBe(77);
        expect(result.stderr).toContain(
          ` is ${done} (the hub refuses it from now on), but its distribution zip ${zip}, which holds its private key, could not be removed (permission denied (EACCES): ${userLabel(user.uid)} may not enter ${join(home, "dists")} (root's, mode 0700)); remove it by hand`,
        );
        expect(existsSync(zip)).toBe(true);
        expect(crlSerials()).toContain(`Serial Number: ${serials[id]}`);
      }
      const after = await listed();
      expect(after.find((t) => t.id === thing.id)?.status).toBe("revoked");
      expect(after.find((t) => t.id === other.id)).toBeUndefined();
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
    tally("faults", 2);
  }, 60_000);

  test("revoke and delete with a CA key that cannot sign the CRL: done, and 78 saying so (it was the CA key's error alone, after the commit, and no CRL)", async () => {
    const home = copyOfHome("crl-unsigned");
    const made = await run(["hub", "thing", "create", "second", "--dir", home, "--json", "-o", join(work, "crl-unsigned.zip")], { timeoutMs: 30_000 });
    expect(made.code, made.stderr).toBe(0);
    const other = JSON.parse(made.stdout) as { id: string };
    writeFileSync(join(home, "ca-key.pem"), "");
    for (const [args, done] of [
      [["hub", "thing", "revoke", thing.name], "revoked"],
      [["hub", "thing", "delete", other.id], "deleted"],
    ] as const) {
      const result = await run([...args, "--dir", home], { timeoutMs: 30_000 });
      expect(result.code, result.stderr).toBe(78);
      expect(result.stderr).toContain(` is ${done} (the hub refuses it from now on), but the CRL could not be made (${join(home, "ca-key.pem")}: not a PKCS#1`);
    }
    const list = await run(["hub", "thing", "list", "--dir", home, "--json"], { timeoutMs: 30_000 });
    const things = JSON.parse(list.stdout) as { id: string; status: string }[];
    expect(things.find((t) => t.id === thing.id)?.status).toBe("revoked");
    expect(things.find((t) => t.id === other.id)).toBeUndefined();
    tally("faults", 2);
  }, 60_000);

  test("a damaged zip (a copy cut short) is 'no distribution' naming the file, 65 / 404, not 70 / 500 'please report it'", async () => {
    const home = copyOfHome("damaged-zip");
    const zip = join(home, "dists", `${thing.id}.zip`);
    truncateSync(zip, 5000);
    const cli = await run(["hub", "thing", "dist", thing.name, "--dir", home, "-o", join(work, "damaged.zip")], { timeoutMs: 20_000 });
    expect(cli.code, cli.stderr).toBe(65);
    expect(cli.stderr).toContain(`its zip ${zip} is damaged (`);
    expect(cli.stderr).toContain("restore it from your backup of the hub home, or create the thing again");
    tally("faults");
  }, 30_000);

  test("a missing CA, broker or client certificate or key is 78 naming the file, as a damaged one is (a missing ca-cert.pem was 74)", async () => {
    for (const file of ["ca-cert.pem", "ca-key.pem"]) {
      const home = copyOfHome(`no-${file}`);
      rmSync(join(home, file));
      const result = await run(["hub", "thing", "create", "another", "--dir", home], { timeoutMs: 30_000 });
      expect(result.code, `${file}: ${result.stderr}`).toBe(78);
      expect(result.stderr).toStartWith(`flashlex: ${join(home, file)}: the CA `);
      expect(result.stderr).toContain("is missing (");
    }
    const home = await homeListeningOn("no-broker-key", []);
    rmSync(join(home, "broker-key.pem"));
    const serve = await run(["hub", "serve", "--dir", home], { timeoutMs: 30_000 });
    expect(serve.code, serve.stderr).toBe(78);
    expect(serve.stderr).toContain(`${join(home, "broker-key.pem")}: the broker private key is missing (`);
    tally("badInputs", 3);
  }, 90_000);
});

describe("what things said, printed to the operator's terminal", () => {
  test("`hub update status` prints a thing's update detail with its control characters escaped: terminal escapes in it forged a healthy row and hid the rest", async () => {
    const home = copyOfHome("escapes");
    const db = new Database(join(home, "hub.db"));
    const now = Date.now();
    const detail = "x\r\u001b[2K\u001b[1Aforged-row  9.9.9  linux-x64  healthy\n\u001b[8m\u001b]0;title\u0007";
    db.run("INSERT INTO thing_updates (thing_id, version, target, seen_at, state, detail, updated_at) VALUES (?, '1.0.0', 'linux-x64', ?, 'failed', ?, ?)", [
      thing.id,
      now,
      detail,
      now,
    ]);
    db.close();
    const result = await run(["hub", "update", "status", "--dir", home], { timeoutMs: 30_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split("\n").filter(hasUnsafeCharacters)).toEqual([]);
    const row = result.stdout.split("\n").find((line) => line.startsWith(thing.name))!;
    expect(row).toContain("failed");
    expect(row).toEndWith("x\\u000d\\u001b[2K\\u001b[1Aforged-row  9.9.9  linux-x64  healthy\\u000a\\u001b[8m\\u001b]0;title\\u0007");
    tally("attacks");
  }, 30_000);
});

describe("hub.db is the hub", () => {
  test("moved aside: every hub command but init exits 78 naming hub.db and the backup, and none creates a new one", async () => {
    const home = copyOfHome("no-db");
    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(home, `hub.db${suffix}`), { force: true });
    const commands = [
      ["hub", "thing", "list"],
      ["hub", "thing", "create", "another"],
      ["hub", "serve"],
      ["hub", "export", thing.name, "-o", join(work, "no-db.zip")],
      ["hub", "send", thing.name, "-f", "/dev/null"],
      ["hub", "token", "rotate"],
      ["hub", "mosquitto-config", "--out", join(work, "no-db-mosquitto")],
    ];
    for (const args of commands) {
      const result = await run([...args, "--dir", home], { timeoutMs: 30_000 });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(78);
      expect(result.stderr).toBe(
        `flashlex: ${join(home, "hub.db")}: the hub database is missing (the things and the operator token live in it); restore it from your backup of the hub home (docs/hub.md, "Backups"), or run \`flashlex hub init --dir <a new directory>\` to start a new hub\n`,
      );
      expect(existsSync(join(home, "hub.db")), args.join(" ")).toBe(false);
    }
    tally("badInputs", commands.length);
  }, 60_000);

  test("emptied (0 bytes, a copy or restore that stopped short): the same 78 for every command, and the file is left empty (it was migrated into a new hub without things)", async () => {
    const home = copyOfHome("empty-db");
    for (const suffix of ["-wal", "-shm"]) rmSync(join(home, `hub.db${suffix}`), { force: true });
    writeFileSync(join(home, "hub.db"), "");
    for (const args of [
      ["hub", "thing", "list"],
      ["hub", "serve"],
      ["hub", "token", "rotate"],
    ]) {
      const result = await run([...args, "--dir", home], { timeoutMs: 30_000 });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(78);
      expect(result.stderr).toStartWith(`flashlex: ${join(home, "hub.db")}: the hub database is empty (0 bytes`);
      expect(result.stderr).toContain('restore it from your backup of the hub home (docs/hub.md, "Backups")');
      expect(statSync(join(home, "hub.db")).size, args.join(" ")).toBe(0);
    }
    tally("badInputs", 3);
  }, 60_000);

  test("damaged: exit 74, the advice is to restore the backup, never to move it aside", async () => {
    const home = copyOfHome("damaged-db");
    for (const suffix of ["-wal", "-shm"]) rmSync(join(home, `hub.db${suffix}`), { force: true });
    // The 100-byte header stays; every page after it becomes noise.
    const fd = openSync(join(home, "hub.db"), "r+");
    writeSync(fd, Buffer.alloc(8192, 0x5a), 0, 8192, 100);
    closeSync(fd);
    for (const args of [
      ["hub", "thing", "list"],
      ["hub", "serve"],
    ]) {
      const result = await run([...args, "--dir", home], { timeoutMs: 30_000 });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(74);
      expect(result.stderr).toStartWith(`flashlex: ${join(home, "hub.db")}: `);
      expect(result.stderr).toContain('restore hub.db from your backup of the hub home (docs/hub.md, "Backups")');
      expect(result.stderr).not.toContain("starts a new one");
    }
    tally("faults", 2);
  }, 60_000);
});

/** Names in `dir` that start with `prefix` (a writer's temporary files and directories). */
const leftovers = (dir: string, prefix: string) => readdirSync(dir).filter((name) => name.startsWith(prefix));

describe("signals part way through a write", () => {
  test("SIGTERM and SIGINT during `hub export`: exit 143 / 130 with one line; no temporary file, no output", async () => {
    for (const [signal, code] of [
      ["SIGTERM", 143],
      ["SIGINT", 130],
    ] as const) {
      const dir = join(work, `export-${signal}`);
      const out = join(dir, "out.zip");
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      const exporting = start(["hub", "export", thing.name, "--dir", hub.dir, "-o", out]);
      await waitUntil("the export's temporary file", () => leftovers(dir, ".out.zip.").length === 1, 20_000, exporting.output);
      exporting.proc.kill(signal);
      expect(await exporting.proc.exited).toBe(code);
      expect(exporting.proc.signalCode).toBeNull(); // it exited by itself, after cleaning up
      expect(exporting.output()).toBe(`flashlex: hub export stopped by ${signal}; nothing was written (its temporary file was removed)\n`);
      expect(readdirSync(dir)).toEqual([]);
    }
    tally("faults", 2);
  }, 60_000);

  test("a SIGKILLed export's temporary file is removed by the next export of that file; a live process's is left alone", async () => {
    const dir = join(work, "export-kill");
    mkdirSync(dir);
    const out = join(dir, "out.zip");
    const exporting = start(["hub", "export", thing.name, "--dir", hub.dir, "-o", out]);
    await waitUntil("the export's temporary file", () => leftovers(dir, ".out.zip.").length === 1, 20_000, exporting.output);
    exporting.proc.kill("SIGKILL");
    await exporting.proc.exited;
    const [killed] = leftovers(dir, ".out.zip.");
    expect(killed).toMatch(new RegExp(`^\\.out\\.zip\\.${exporting.proc.pid}-[0-9a-f]{8}\\.tmp$`));
    // One that looks like the work in progress of a live process (this test's).
    const live = `.out.zip.${process.pid}-0123abcd.tmp`;
    writeFileSync(join(dir, live), "in progress");
    const again = await run(["hub", "export", thing.name, "--dir", hub.dir, "-o", out], { timeoutMs: 60_000 });
    expect(again.code).toBe(0);
    expect(again.stdout).toStartWith(`${out}: `); // all of the thing's messages, the stored ones and any a test sent
    expect(Number(/: (\d+) messages/.exec(again.stdout)?.[1])).toBeGreaterThanOrEqual(STORED_MESSAGES);
    expect(readdirSync(dir).sort()).toEqual([live, "out.zip"]);
    tally("faults", 1);
  }, 60_000);

  test("two exports of one day under the default name: the second takes name-2.zip, the first stays as it was (it was overwritten: the name is the thing and the day, not the range)", async () => {
    const dir = join(work, "export-default-name");
    mkdirSync(dir);
    const first = Math.floor(Date.now() / 1000) - STORED_MESSAGES;
    const exportRange = (from: number, to: number) =>
      run(["hub", "export", thing.name, "--dir", hub.dir, "--since", String(from), "--until", String(to)], { cwd: dir, timeoutMs: 60_000 });
    const earlier = await exportRange(first, first + 4);
    expect(earlier.code, earlier.stderr).toBe(0);
    const [name] = readdirSync(dir);
    expect(earlier.stdout).toBe(`${join(dir, name!)}: 5 messages\n`);
    const bytes = readFileSync(join(dir, name!));
    const later = await exportRange(first + 10, first + 11);
    expect(later.code, later.stderr).toBe(0);
    const second = name!.replace(/\.zip$/, "-2.zip");
    expect(later.stdout).toBe(`${join(dir, second)}: 2 messages\n`);
    expect(readdirSync(dir).sort()).toEqual([name!, second].sort());
    expect(readFileSync(join(dir, name!)).equals(bytes)).toBe(true);
    // -o names the file: replaced, as asked
    const named = await run(["hub", "export", thing.name, "--dir", hub.dir, "--since", String(first), "--until", String(first), "-o", join(dir, name!)], {
      timeoutMs: 60_000,
    });
    expect(named.stdout).toBe(`${join(dir, name!)}: 1 message\n`);
    // four at once: each takes a name of its own, none fails for a name another took meanwhile
    const racing = join(work, "export-default-race");
    mkdirSync(racing);
    const four = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        run(["hub", "export", thing.name, "--dir", hub.dir, "--since", String(first + i), "--until", String(first + i)], { cwd: racing, timeoutMs: 60_000 }),
      ),
    );
    expect(four.map((r) => r.code)).toStrictEqual([0, 0, 0, 0]);
    expect(new Set(four.map((r) => r.stdout)).size).toBe(4);
    expect(readdirSync(racing)).toHaveLength(4);
    tally("faults", 1);
  }, 60_000);

  test("`hub init` stopped by SIGTERM leaves neither the home nor its half-made directory; a SIGKILLed one's is removed by the next init", async () => {
    const parent = join(work, "inits");
    mkdirSync(parent);
    const target = join(parent, "hub");
    // init is quick (~0.2 s): try until a signal lands while it works; whatever lands, nothing half-made stays.
    let stopped = 0;
    for (let attempt = 0; attempt < 10 && stopped === 0; attempt++) {
      rmSync(target, { recursive: true, force: true });
      const init = start(["hub", "init", "--dir", target]);
      await waitUntil("init's half-made home, or its end", () => leftovers(parent, ".hub.init-").length > 0 || init.proc.exitCode !== null, 20_000);
      init.proc.kill("SIGTERM");
      const code = await init.proc.exited;
      expect(leftovers(parent, ".hub.init-")).toEqual([]);
      if (code === 0) continue; // it had finished
      expect(code).toBe(143);
      expect(init.output()).toBe("flashlex: hub init stopped by SIGTERM; nothing was created (the half-made home was removed)\n");
      expect(existsSync(target)).toBe(false);
      stopped++;
    }
    expect(stopped).toBe(1);

    let killedStaging: string[] = [];
    for (let attempt = 0; attempt < 10 && killedStaging.length === 0; attempt++) {
      rmSync(target, { recursive: true, force: true });
      const init = start(["hub", "init", "--dir", target]);
      await waitUntil("init's half-made home, or its end", () => leftovers(parent, ".hub.init-").length > 0 || init.proc.exitCode !== null, 20_000);
      init.proc.kill("SIGKILL");
      await init.proc.exited;
      killedStaging = leftovers(parent, ".hub.init-");
    }
    expect(killedStaging).toHaveLength(1);
    rmSync(target, { recursive: true, force: true });
    expect((await run(["hub", "init", "--dir", target])).code).toBe(0);
    expect(leftovers(parent, ".hub.init-")).toEqual([]);
    tally("faults", 2);
  }, 60_000);
});

describe("a signal while hub serve starts", () => {
  test("SIGTERM or SIGHUP the moment its broker listens (before hub.started), or while it waits (up to 30 s) for an external broker that refuses: exit 0 within 10 s, its socket gone (a signal in that moment killed it: 143 / 129)", async () => {
    const cases: [string, string[], RegExp, "SIGTERM" | "SIGHUP", string][] = [
      // it finishes starting (well under a second), then stops as for any signal
      ["starting-SIGTERM", [], /mqtt\.listening/, "SIGTERM", "hub.stopping signal=SIGTERM"],
      ["starting-SIGHUP", [], /mqtt\.listening/, "SIGHUP", "hub.stopping signal=SIGHUP"],
      // the wait for the broker ends at once
      ["starting-external", ["--broker", `mqtts://127.0.0.1:${await freePort()}`], /mqtt\.error .*ECONNREFUSED/, "SIGTERM", "hub.stopped signal=SIGTERM"],
    ];
    for (const [name, flags, moment, signal, said] of cases) {
      const home = await homeListeningOn(name, []);
      const serving = start(["hub", "serve", "--dir", home, ...flags]);
      try {
        await serving.waitFor(moment, 30_000);
        serving.proc.kill(signal);
        const ended = await Promise.race([serving.proc.exited, Bun.sleep(10_000).then(() => "still running")]);
        expect(ended, `${name}\n${serving.output()}`).toBe(0);
        expect(serving.output()).toContain(said);
        expect(serving.output()).toContain("hub.stopped");
        expect(existsSync(join(home, "hub.sock"))).toBe(false);
      } finally {
        await serving.stop();
      }
    }
    tally("faults", cases.length);
  }, 90_000);
});
