/**
 * Property: whatever a user feeds the compiled binary — a mangled or random configuration, any
 * bytes on stdin, any command line — it answers with a documented exit code and at most a
 * one-line error: never 70 ("a bug in FlashLex"), never a stack trace, never a hang.
 *
 *   configs   the guide's config (as the thing fixture writes it) with keys removed, retyped or
 *             mangled, unknown keys added, YAML oddities (aliases, tags, duplicate keys, deep
 *             nesting, BOM, tabs), or random bytes; run through messages list, collect, bootstrap
 *             and (rarely) serve
 *   stdin     random bytes, invalid UTF-8 inside JSON, deep JSON, huge documents, any JSON value,
 *             to collect
 *   argv      random flags and values for every command, `hub` subcommands included (against a
 *             fresh hub home), paths that are missing, directories, devices or empty
 *
 * Bounded and seeded: a few hundred runs in total, a few at a time. FLASHLEX_FUZZ_SEED=<n>
 * replays a run (the seed is printed with any failure); FLASHLEX_FUZZ_RUNS scales the count.
 * Loopback only: every endpoint a run can reach is 127.0.0.1. Nothing is written outside the
 * test's directories: paths come from a sandbox, the defaults (HOME, FLASHLEX_HUB_DIR) point into
 * the run's own directory, and install/uninstall-service only ever run with --dry-run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { parse, stringify } from "yaml";
import { COMMANDS } from "../../src/main.ts";
import { binaryPath, type RunResult, run } from "../support/binary.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, type ThingFixture } from "../support/thing-fixture.ts";

const SEED = Number(process.env.FLASHLEX_FUZZ_SEED ?? 20_241_130);
const SCALE = Number(process.env.FLASHLEX_FUZZ_RUNS ?? 1);
/** fc.assert lanes run side by side: each spends most of its time waiting for a child process */
const LANES = 3;

let thing: ThingFixture;
let receiver: Receiver;
let work: string;
let hubHome: string;
let guide: any;
let counter = 0;

/** A fresh directory for one run: its cwd, its data directory, anything relative it writes. */
function scratch(): string {
  const dir = join(work, `run-${++counter}`);
  mkdirSync(dir);
  return dir;
}

const DOCUMENTED = new Set([0, 1, 64, 65, 69, 74, 75, 77, 78]);

/**
 * What every run must satisfy. `mayOutlive` is for commands that run until stopped (serve): if
 * the time bound kills them, that is not a failure. `mayFailCheck`: bootstrap's exit 1.
 */
function judge(what: unknown, result: RunResult & { timedOut: boolean }, opts: { mayOutlive?: boolean; mayFailCheck?: boolean } = {}): void {
  tally("badInputs");
  if (process.env.FLASHLEX_FUZZ_VERBOSE)
    console.log(
      `${result.code} ${result.timedOut ? "T" : ""} ${
        result.stderr
          .split("\n")
          .find((l) => l.startsWith("flashlex:"))
          ?.slice(0, 160) ?? ""
      } <= ${JSON.stringify(what).slice(0, 160)}`,
    );
  const context = `seed ${SEED}: ${JSON.stringify(what).slice(0, 600)}\nexit ${result.code}\nstderr: ${result.stderr.slice(0, 1500)}`;
  if (result.timedOut) {
    if (!opts.mayOutlive) throw new Error(`hung (killed after the time bound): ${context}`);
    return;
  }
  if (result.code === 70) throw new Error(`exit 70: ${context}`);
  if (!DOCUMENTED.has(result.code) || (result.code === 1 && !opts.mayFailCheck)) throw new Error(`undocumented exit code: ${context}`);
  // a stack trace: "    at fn (file:1:2)" lines, or Bun's own crash report
  if (/^\s+at .+[:(]\d+:\d+\)?$/m.test(result.stderr) || /panic|Segmentation fault|Bun has crashed/i.test(result.stderr)) {
    throw new Error(`stack trace on stderr: ${context}`);
  }
  const errorLines = result.stderr.split("\n").filter((l) => l.startsWith("flashlex: "));
  if (errorLines.length > 1) throw new Error(`more than one error line: ${context}`);
}

async function runBounded(args: string[], opts: { input?: string | Uint8Array; cwd: string; timeoutMs?: number }): Promise<RunResult & { timedOut: boolean }> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const started = Date.now();
  // a safety net under the forced flags below: whatever the command line says, the defaults
  // (~/.flashlex-hub, $FLASHLEX_HUB_DIR) point into the run's own directory
  const env = { HOME: opts.cwd, FLASHLEX_HUB_DIR: join(opts.cwd, "default-hub") };
  const result = await run(args, { input: opts.input, cwd: opts.cwd, timeoutMs, env });
  // run() SIGKILLs at the bound: the child then reports 137 or a signal
  const timedOut = Date.now() - started >= timeoutMs - 50 && result.code !== 0 && !DOCUMENTED.has(result.code);
  return { ...result, timedOut };
}

/** Runs `property` in LANES parallel fc.assert calls, `total` runs in all, seeds SEED+lane. */
async function assertInLanes<T>(arb: fc.Arbitrary<T>, check: (value: T) => Promise<void>, total: number): Promise<void> {
  const perLane = Math.max(1, Math.round((total * SCALE) / LANES));
  await Promise.all(
    Array.from({ length: LANES }, (_, lane) => fc.assert(fc.asyncProperty(arb, check), { seed: SEED + lane, numRuns: perLane, endOnFailure: true })),
  );
}

// ---------------------------------------------------------------------------------------------
// generators

/** Values that stand in for any setting: every YAML/JSON type, edge numbers, odd text. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, "", " ", "-1", "0x10", "NaN", "~", "null", "yes", "no"),
  // the other values of the settings that choose behaviour, so combinations get tried
  fc.constantFrom("basicPubsub", "test", "subscribe", "persistent", "ingress/#", "+/x", "flashlex/collect"),
  fc.integer(),
  fc.double({ noNaN: false }),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constant("x".repeat(100_000)),
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 }),
  fc.constant({}),
);

/** What an endpoint may become: odd, but never a name that needs DNS or a host off this machine. */
const loopbackEndpoint = fc.constantFrom(
  "",
  "127.0.0.1",
  "::1",
  "localhost",
  "not a url",
  "http://127.0.0.1:1",
  "https://127.0.0.1:1",
  "http://[::1]:1",
  "ftp://127.0.0.1",
  5,
  null,
  [],
  {},
);

const ENDPOINT_PATHS = new Set(["flashlex.app.api.endpoint", "flashlex.thing.endpoint"]);

function keyPaths(node: unknown, prefix: string[] = []): string[][] {
  if (node === null || typeof node !== "object" || Array.isArray(node)) return [prefix];
  return [prefix, ...Object.entries(node as Record<string, unknown>).flatMap(([k, v]) => keyPaths(v, [...prefix, k]))];
}

function setAt(doc: any, path: string[], value: unknown, remove = false): void {
  if (path.length === 0) return;
  let node = doc;
  for (const key of path.slice(0, -1)) {
    if (node === null || typeof node !== "object") return;
    node = node[key];
  }
  if (node === null || typeof node !== "object") return;
  if (remove) delete node[path.at(-1)!];
  else node[path.at(-1)!] = value;
}

type Mutation = { op: "remove" | "set" | "endpoint" | "unknown"; pathIndex: number; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("remove" as const), pathIndex: fc.nat(), value: fc.constant(undefined) }),
  fc.record({ op: fc.constant("set" as const), pathIndex: fc.nat(), value: anyValue }),
  fc.record({ op: fc.constant("endpoint" as const), pathIndex: fc.nat(), value: loopbackEndpoint }),
  fc.record({ op: fc.constant("unknown" as const), pathIndex: fc.nat(), value: anyValue }),
);

/** The guide's config with mutations applied, as YAML text. */
function mutatedConfig(mutations: Mutation[]): string {
  const doc = structuredClone(guide);
  for (const m of mutations) {
    const paths = keyPaths(doc).filter((p) => p.length > 0);
    if (!paths.length) break;
    if (m.op === "endpoint") {
      setAt(doc, [...ENDPOINT_PATHS][m.pathIndex % 2]!.split("."), m.value);
      continue;
    }
    const candidates = m.op === "remove" ? paths : paths.filter((p) => !ENDPOINT_PATHS.has(p.join(".")));
    const path = candidates[m.pathIndex % candidates.length]!;
    if (m.op === "remove") setAt(doc, path, undefined, true);
    else if (m.op === "set") setAt(doc, path, m.value);
    else setAt(doc, [...path.slice(0, -1), `extra_${m.pathIndex % 7}`], m.value);
  }
  // the database name is a file in the data directory: never let a run write outside it
  const db = doc?.flashlex?.app?.db;
  if (db && typeof db.subscriptionData === "string") db.subscriptionData = db.subscriptionData.replace(/\.\.|\//g, "_");
  return stringify(doc);
}

/** Texts that a YAML parser finds hard, each still loopback-safe. */
const yamlOddities = fc.constantFrom(
  "",
  "\uFEFF" + "flashlex:\n  app: {}\n",
  "flashlex:\n\tapp: {}\n",
  "flashlex: &a\n  app: *a\n",
  "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nflashlex: [*d, *d, *d, *d, *d, *d, *d, *d]\n",
  "flashlex:\n  app: 1\n  app: 2\n",
  "flashlex: !!binary aGVsbG8=\n",
  "flashlex: !!set {a, b}\n",
  "flashlex: !custom {a: 1}\n",
  "--- a\n--- b\n",
  "[".repeat(20_000) + "]".repeat(20_000),
  `${"{a: ".repeat(5_000)}1${"}".repeat(5_000)}`,
  `${"- ".repeat(5_000)}x`,
  "flashlex:\r\n  app:\r\n    thread: subscribe\r\n",
  "%YAML 9.9\n---\nflashlex: {}\n",
  'flashlex: "\\uD800"\n',
);

const configText: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }).map(mutatedConfig) },
  { weight: 2, arbitrary: yamlOddities },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.array(mutation, { maxLength: 2 }), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat()).map(([m, bad, at]) => {
      const text = Buffer.from(mutatedConfig(m));
      const cut = at % text.length;
      return Buffer.concat([text.subarray(0, cut), bad, text.subarray(cut)]);
    }),
  },
);

/** Documents for collect's stdin. */
const stdinDocument: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  fc.json({ maxDepth: 4 }),
  fc.uint8Array({ maxLength: 4096 }),
  fc.tuple(fc.json({ maxDepth: 2 }), fc.uint8Array({ minLength: 1, maxLength: 6 }), fc.nat()).map(([json, bad, at]) => {
    const text = Buffer.from(json);
    const cut = at % (text.length + 1);
    return Buffer.concat([text.subarray(0, cut), Buffer.from(bad).map((b) => b | 0x80), text.subarray(cut)]);
  }),
  fc.integer({ min: 1, max: 200_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
  fc.integer({ min: 1, max: 200_000 }).map((n) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`),
  fc.integer({ min: 200_000, max: 400_000 }).map((n) => JSON.stringify({ big: "x".repeat(n) })),
  fc.constantFrom("", " ", "\n", "\uFEFF{}", "null", "1e999", '{"a":1,"a":2}', '"\\ud800"', "{}{}", "[1,]", "\u0000"),
);

// ---------------------------------------------------------------------------------------------
// command lines

const THING_FLAGS = ["-c", "--config", "-d", "--data", "-k", "--keys"];
/** Each thing command with the flags it takes (main.ts); `messages` actions as words. */
const THING_COMMANDS: { words: string[]; flags: string[] }[] = [
  { words: ["bootstrap"], flags: [...THING_FLAGS, "--json"] },
  { words: ["serve"], flags: [...THING_FLAGS, "--exec"] },
  { words: ["collect"], flags: [...THING_FLAGS, "--file", "--via", "--json"] },
  ...["list", "ack", "delete", "frob"].map((action) => ({
    words: ["messages", action],
    flags: [...THING_FLAGS, "--json", "--all", "--acked", "--topic", "--since", "--limit"],
  })),
  ...["list", "retry", "drop", "frob"].map((action) => ({ words: ["outbox", action], flags: [...THING_FLAGS, "--json", "--state"] })),
  { words: ["install-service"], flags: [...THING_FLAGS, "--user", "--dry-run", "--print"] },
  { words: ["uninstall-service"], flags: [...THING_FLAGS, "--dry-run"] },
  { words: ["enroll"], flags: ["--hub", "--token", "--ca-fingerprint", "--name", "--dir", "--key-type"] },
];
/** Every hub command with its own flags, from the command table (init twice: it feeds provisioning). */
const hubCommandTable = COMMANDS.filter((c) => c.name.startsWith("hub "));
const HUB_COMMANDS: { words: string[]; flags: string[] }[] = [
  ...hubCommandTable
    .filter((c) => c.name !== "hub serve")
    .map((c) => ({ words: c.name.split(" "), flags: c.options.flatMap((o) => o.flags.match(/--?[\w-]+/g) ?? []) })),
  ...hubCommandTable
    .filter((c) => c.name === "hub init")
    .map((c) => ({ words: c.name.split(" "), flags: c.options.flatMap((o) => o.flags.match(/--?[\w-]+/g) ?? []) })),
  { words: ["hub"], flags: ["--dir", "--help"] },
  { words: ["hub", "thing"], flags: ["--dir"] },
  { words: ["hub", "frob"], flags: ["--dir"] },
];
const OTHER_COMMANDS: { words: string[]; flags: string[] }[] = [[], ["version"], ["frob"], ["--help"], ["--version"], ["help"]].map((words) => ({
  words,
  flags: [],
}));
const ALL_COMMANDS = [...THING_COMMANDS, ...HUB_COMMANDS, ...OTHER_COMMANDS];
const ANY_FLAGS = [...new Set([...ALL_COMMANDS.flatMap((c) => c.flags), "--help", "-h", "-v", "--version", "--bogus", "-x", "--", "--follow"])];

/** Flag values: numbers in every spelling, paths of every kind, odd text. Relative paths land in the run's cwd. */
function flagValue(paths: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(
      "abc",
      "-5",
      "0",
      "1",
      "1.5",
      "99999999999999999999",
      "1e3",
      "0x10",
      "",
      " ",
      "-",
      "--",
      "Infinity",
      "NaN",
      "65536",
      "8883",
      "http",
      "mqtt",
      "egress",
      "ingress",
      "embedded",
      "mqtts://127.0.0.1:1",
      "http://127.0.0.1:1",
      "2024-01-31",
      "2024-13-45",
      "yesterday",
      "nobody",
      "root",
      "true",
      "pending",
      "sent",
      "rejected",
      "ec",
      "rsa",
    ),
    // names and URLs that are almost right: they pass a loose check and fail a later one
    fc.constantFrom(
      "a#b",
      "x y",
      "::1",
      "[::1]",
      "-x",
      "host_name",
      "127.0.0.1",
      "localhost",
      "http://127.0.0.1:1/#x",
      "http://127.0.0.1:1/a b",
      "https://127.0.0.1:1/",
      "http://a:b@127.0.0.1:1",
      "ftp://127.0.0.1",
      "mqtt://127.0.0.1:1",
      "mqtts://127.0.0.1",
      "a,b",
      ",",
      "a.-b",
      "xn--",
      "1.2.3.4.5",
    ),
    fc.constantFrom(...paths),
    fc.string({ maxLength: 30 }).map((s) => s.replace(/\0/g, "").replace(/^\/+/, "").replace(/\.\./g, "_")),
  );
}

interface CommandLine {
  command: { words: string[]; flags: string[] };
  tokens: string[];
  withConfig: boolean;
  stdin: string | undefined;
}

function commandLine(paths: string[]): fc.Arbitrary<CommandLine> {
  return fc.constantFrom(...ALL_COMMANDS).chain((command) => {
    // mostly the command's own flags (that is where the checks are), sometimes anyone's
    const flag = command.flags.length
      ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...command.flags) }, { weight: 1, arbitrary: fc.constantFrom(...ANY_FLAGS) })
      : fc.constantFrom(...ANY_FLAGS);
    const token = fc.oneof(
      { weight: 4, arbitrary: fc.tuple(flag, flagValue(paths)).map(([f, value]) => [f, value]) },
      {
        weight: 1,
        arbitrary: fc.tuple(flag, flagValue(paths)).map(([f, value]) => [f.startsWith("--") ? `${f}=${value}` : f, ...(f.startsWith("--") ? [] : [value])]),
      },
      { weight: 1, arbitrary: flag.map((f) => [f]) },
      { weight: 1, arbitrary: flagValue(paths).map((value) => [value]) },
    );
    return fc.record({
      command: fc.constant(command),
      tokens: fc.array(token, { maxLength: 5 }).map((t) => t.flat()),
      withConfig: fc.boolean(),
      stdin: fc.option(fc.constantFrom("{}", '{"message":1}', "not json", "\xff"), { nil: undefined }),
    });
  });
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  binaryPath();
  work = mkdtempSync(join(tmpdir(), "flashlex-fuzz-"));
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  receiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  // collect through the receiver; the broker stays unreachable (port 1): nothing leaves loopback
  thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = receiver.url));
  guide = parse(readFileSync(thing.configPath, "utf8"));
  hubHome = join(work, "hub");
  const init = await run(["hub", "init", "--dir", hubHome, "--api-url", "http://127.0.0.1:1", "--broker-host", "127.0.0.1", "--broker-port", "2"]);
  expect(init.code).toBe(0);
  console.log(`bad-inputs property: seed ${SEED} (replay with FLASHLEX_FUZZ_SEED=${SEED})`);
}, 60_000);

afterAll(async () => {
  await receiver?.stop();
  if (thing) rmSync(thing.dir, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("bad inputs never make the binary exit 70", () => {
  test("generated configurations: messages list, collect, bootstrap and serve", async () => {
    // serve runs until stopped when the config is good: rarely, and stopped after 1.5 s
    const commands = fc.oneof(
      { weight: 9, arbitrary: fc.constantFrom(["messages", "list"], ["collect"], ["bootstrap"]) },
      { weight: 1, arbitrary: fc.constant(["serve"]) },
    );
    await assertInLanes(
      fc.tuple(configText, commands),
      async ([config, command]) => {
        const dir = scratch();
        const file = join(dir, "config.yml");
        writeFileSync(file, config);
        const serve = command[0] === "serve";
        const result = await runBounded([...command, "-c", file, "-k", thing.keysDir, "-d", join(dir, "data")], {
          cwd: dir,
          input: command[0] === "collect" ? '{"fuzz":true}' : undefined,
          timeoutMs: serve ? 1_500 : 20_000,
        });
        judge(
          { config: typeof config === "string" ? config.slice(0, 400) : `bytes ${Buffer.from(config).toString("base64").slice(0, 200)}`, command },
          result,
          { mayOutlive: serve, mayFailCheck: command[0] === "bootstrap" },
        );
      },
      120,
    );
  }, 180_000);

  test("generated stdin documents to collect", async () => {
    await assertInLanes(
      stdinDocument,
      async (document) => {
        const dir = scratch();
        const result = await runBounded(["collect", "-c", thing.configPath, "-k", thing.keysDir, "-d", join(dir, "data")], { cwd: dir, input: document });
        judge(
          {
            stdin: typeof document === "string" ? document.slice(0, 200) : `bytes ${Buffer.from(document).toString("base64").slice(0, 200)}`,
            length: document.length,
          },
          result,
        );
        expect([0, 65]).toContain(result.code);
      },
      60,
    );
  }, 180_000);

  test("generated command lines for every command, hub subcommands against a fresh hub home", async () => {
    // Paths a command may read or write: copies of the real files (an -o or --out that
    // overwrites one must not change what later runs test), a directory of its own, devices,
    // and places that do not exist, all inside the test's directory.
    const sandbox = join(work, "paths");
    mkdirSync(join(sandbox, "keys"), { recursive: true });
    mkdirSync(join(sandbox, "empty"));
    cpSync(thing.keysDir, join(sandbox, "keys"), { recursive: true });
    writeFileSync(join(sandbox, "config.yml"), readFileSync(thing.configPath));
    writeFileSync(join(sandbox, "hub.yml"), readFileSync(join(hubHome, "hub.yml")));
    const paths = [
      join(sandbox, "config.yml"),
      join(sandbox, "keys"),
      join(sandbox, "empty"),
      join(sandbox, "hub.yml"),
      join(sandbox, "does", "not", "exist"),
      "/dev/null",
      "/dev/zero",
      "missing.yml",
      "out",
    ];
    await assertInLanes(
      commandLine(paths),
      async (line) => {
        const dir = scratch();
        const words = line.command.words;
        const forced: string[] = [];
        const thingCommand = THING_COMMANDS.includes(line.command);
        // the configured thing, when asked for; its data directory is this run's own
        if (thingCommand && line.withConfig) forced.push("-c", thing.configPath, "-k", thing.keysDir, "-d", join(dir, "data"));
        // never touch this machine's systemd: install/uninstall only ever print what they would do
        if (words[0] === "install-service" || words[0] === "uninstall-service") forced.push("--dry-run");
        // the hub home is the test's or a fresh one (always for init); hub serve is not fuzzed (it would listen)
        const init = words.join(" ") === "hub init";
        const home = line.withConfig && !init ? hubHome : join(dir, "hub");
        if (words[0] === "hub") forced.push("--dir", home);
        // forced flags go last but before any `--`, after which nothing is a flag; a random token
        // that gives one of them again makes the line a usage error (64, a flag given twice)
        const end = line.tokens.indexOf("--");
        const args = end < 0 ? [...words, ...line.tokens, ...forced] : [...words, ...line.tokens.slice(0, end), ...forced, ...line.tokens.slice(end)];
        const longRunning = words[0] === "serve" || args.includes("--follow");
        const result = await runBounded(args, { cwd: dir, input: line.stdin, timeoutMs: longRunning ? 1_500 : 20_000 });
        judge({ args }, result, { mayOutlive: longRunning, mayFailCheck: words[0] === "bootstrap" });
        // whatever init accepted must make a thing that works: provisioning reads every setting
        if (init && result.code === 0 && existsSync(join(home, "hub.yml"))) {
          const create = await runBounded(["hub", "thing", "create", "fuzz", "--dir", home], { cwd: dir });
          judge({ args, followedBy: "hub thing create fuzz" }, create);
          expect(create.code).toBe(0);
        }
      },
      120,
    );
  }, 180_000);
});
