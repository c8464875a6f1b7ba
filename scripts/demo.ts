/**
 * `npm run demo`: the whole system on this machine, on the embedded default. It builds the
 * binary, makes a hub in a temporary directory, starts it, enrols a thing (its key made on the
 * "device", a CA fingerprint pinned), runs the thing agent against the hub (bootstrap, then
 * serve), sends an ingress message from the hub and
 * shows the thing got it, collects an egress message from the thing and shows the hub stored
 * it. It ends by printing the web console's address and the operator access token to sign in
 * with, then keeps both running until Ctrl-C (`--exit` or no terminal: stops at once).
 * `--api-port N` and `--broker-port N` choose the hub's ports (default: free ones the kernel
 * picks), for a machine whose firewall or policy allows only some.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { unzipSync } from "fflate";
import { parse, parseDocument } from "yaml";

/** The demo's options; a wrong one is said in one line, exit 64 (sysexits EX_USAGE, as flashlex's). */
function options(): { exit: boolean; apiPort?: number; brokerPort?: number } {
  const port = (flag: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < 1 || n > 65535) usage(`${flag} ${value}: expected a TCP port, 1 to 65535`);
    return n;
  };
  try {
    const { values, tokens } = parseArgs({
      options: { exit: { type: "boolean" }, "api-port": { type: "string" }, "broker-port": { type: "string" } },
      tokens: true,
    });
    const given = tokens.flatMap((token) => (token.kind === "option" ? [token.name] : []));
    const twice = given.find((name, i) => given.indexOf(name) !== i);
    if (twice) usage(`--${twice} given twice: give it once`);
    const chosen = { exit: values.exit === true, apiPort: port("--api-port", values["api-port"]), brokerPort: port("--broker-port", values["broker-port"]) };
    if (chosen.apiPort !== undefined && chosen.apiPort === chosen.brokerPort)
      usage(`--api-port and --broker-port are both ${chosen.apiPort}: give the hub two ports`);
    return chosen;
  } catch (err) {
    // node's own message; its first line says what is wrong (--api-port -1 adds two more)
    return usage((err as Error).message.split("\n")[0]!);
  }
}

function usage(problem: string): never {
  console.error(`demo: ${problem}\nusage: npm run demo [-- [--exit] [--api-port N] [--broker-port N]]`);
  process.exit(64);
}

const opts = options();
// before anything is built or made: a chosen port in use failed only at the hub's start
for (const [flag, port] of [
  ["--api-port", opts.apiPort],
  ["--broker-port", opts.brokerPort],
] as const) {
  if (port !== undefined && !(await isFree(port))) usage(`${flag} ${port}: something on this machine already listens on 127.0.0.1:${port}; choose another`);
}
const root = join(import.meta.dir, "..");
const stayUp = process.stdout.isTTY && !opts.exit;
const bold = (text: string) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);
const step = (n: number, text: string) => console.log(`\n${bold(`${n}. ${text}`)}`);
const children: ReturnType<typeof Bun.spawn>[] = [];
const work = mkdtempSync(join(tmpdir(), "flashlex-demo-"));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Whether 127.0.0.1:`port` can be listened on now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer().once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

let stopping: Promise<never> | undefined;
/**
 * Stops every flashlex still running (the last started first), removes the working directory and
 * exits with `code`. Called once: a signal and a command that fails because of it come together.
 */
function cleanup(code: number): Promise<never> {
  stopping ??= (async () => {
    for (const child of [...children].reverse()) {
      child.kill("SIGTERM");
      await Promise.race([child.exited, Bun.sleep(8000)]);
    }
    // retried: a command that was writing in it (an enroll) may still add a file meanwhile
    rmSync(work, { recursive: true, force: true, maxRetries: 5 });
    process.exit(code);
  })();
  return stopping;
}
process.on("SIGINT", () => void (console.log("\nstopping the thing and the hub..."), cleanup(0)));
process.on("SIGTERM", () => void cleanup(0));
// the terminal closed (or the ssh session dropped): nothing left to print to, but the keys and
// the hub's database in the working directory still go
process.on("SIGHUP", () => void cleanup(0));

/** Runs the binary, shows the command and its output indented; fails the demo on a bad exit. */
async function flashlex(args: string[], opts: { input?: string; show?: boolean; env?: Record<string, string> } = {}): Promise<string> {
  const assignments = Object.entries(opts.env ?? {}).map(([name, value]) => `${name}=${value} `);
  console.log(
    `  $ ${assignments.join("")}flashlex ${args.map((a) => (a.startsWith(work) ? a.replace(work, "$DEMO") : a)).join(" ")}${opts.input ? `  <<< '${opts.input}'` : ""}`,
  );
  const proc = Bun.spawn([binary, ...args], {
    stdin: opts.input ? new Blob([opts.input]) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
  });
  children.push(proc); // stopped by cleanup too, if a signal comes while it runs
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  children.splice(children.indexOf(proc), 1);
  if (opts.show !== false) for (const line of out.trimEnd().split("\n")) if (line) console.log(`    ${line}`);
  if (code !== 0) {
    // stopped by cleanup (a signal): not a failure of its own
    if (!stopping) console.error(`demo: flashlex ${args[0]} exited ${code}\n${err}`);
    await cleanup(1);
  }
  return out;
}

/** Starts a long-running flashlex; resolves once `ready` appears in its log. */
async function background(name: string, args: string[], ready: RegExp): Promise<void> {
  console.log(`  $ flashlex ${args.map((a) => a.replace(work, "$DEMO")).join(" ")} &`);
  const proc = Bun.spawn([binary, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  children.push(proc);
  let log = "";
  const decoder = new TextDecoder();
  (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
      const text = decoder.decode(chunk, { stream: true });
      log += text;
      for (const line of text.split("\n"))
        if (/ingress\.stored|egress\.|hub\.(collect|publish)|error/i.test(line)) console.log(`    [${name}] ${line.replace(/^\S+ /, "")}`);
    }
  })();
  const deadline = Date.now() + 20_000;
  while (!ready.test(log)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      console.error(`demo: ${name} did not start:\n${log}`);
      await cleanup(1);
    }
    await Bun.sleep(50);
  }
}

step(0, "Build the flashlex binary for this machine");
const build = Bun.spawnSync([process.execPath, join(root, "scripts/build.ts"), "--host", "--outdir", join(root, "dist")], {
  stdout: "ignore",
  stderr: "inherit",
});
if (build.exitCode !== 0) await cleanup(1);
const binary = join(root, "dist", `flashlex-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
console.log(`  ${binary}`);
console.log(`  working directory: ${work}  ($DEMO below; removed at the end)`);

const hubDir = join(work, "hub");
const apiPort = opts.apiPort ?? (await freePort());
const brokerPort = opts.brokerPort ?? (await freePort());

step(1, "Create a hub: certificate authority, broker certificate, database, operator token");
const initOutput = await flashlex([
  "hub",
  "init",
  "--dir",
  hubDir,
  "--api-url",
  `http://127.0.0.1:${apiPort}`,
  "--broker-host",
  "127.0.0.1",
  "--broker-port",
  String(brokerPort),
  "--name",
  "127.0.0.1,localhost",
]);
// `hub init` prints the token once, on the line after the one that announces it.
const initLines = initOutput.split("\n");
const operatorToken = initLines[initLines.findIndex((line) => line.startsWith("operator access token")) + 1]?.trim() ?? "";
// The demo's thing runs on this machine: the broker listens on loopback only, not on every
// interface as hub init makes it for things elsewhere (the line above says how to narrow it).
const hubYml = join(hubDir, "hub.yml");
const hubSettings = parseDocument(readFileSync(hubYml, "utf8"));
hubSettings.setIn(["hub", "broker", "listenHost"], "127.0.0.1");
// no scrape listener: its fixed default port (127.0.0.1:9464) is one more that two demos, or a
// Prometheus exporter already there, would fight over, and the demo shows no metrics
hubSettings.setIn(["hub", "metrics", "listen"], false);
writeFileSync(hubYml, hubSettings.toString());
console.log(
  "    (the demo sets hub.broker.listenHost: 127.0.0.1 and hub.metrics.listen: false in hub.yml: nothing listens beyond this machine, and only on the two ports above)",
);

step(2, "Start the hub: embedded MQTT broker (mutual TLS) and the HTTP API");
await background("hub", ["hub", "serve", "--dir", hubDir], /hub\.(ready|started|listening)/);

step(3, "On the hub: an enrolment token for one device, and the CA fingerprint the device pins");
const enrolment = JSON.parse(await flashlex(["hub", "enroll-token", "create", "--dir", hubDir, "--json"], { show: false }));
// the two fields of its JSON the device needs, not the whole document
console.log(`    (from the JSON) token, shown once: ${enrolment.token}\n    (from the JSON) hub CA fingerprint: ${enrolment.caFingerprint}`);

step(4, "On the thing: enrol; its key pair is made here and never leaves it");
const thingRoot = join(work, "thing");
mkdirSync(thingRoot);
// the token in the environment, as `hub enroll-token create` prints the line: an argument shows in ps to every user
await flashlex(["enroll", "--hub", enrolment.hub, "--ca-fingerprint", enrolment.caFingerprint, "--name", "demo-thing", "--dir", thingRoot], {
  env: { FLASHLEX_ENROLL_TOKEN: enrolment.token },
});
const config = parse(readFileSync(join(thingRoot, "config.yml"), "utf8"));
const thingName: string = config.flashlex.thing.name;
const flags = ["-c", join(thingRoot, "config.yml"), "-d", join(thingRoot, "data")];

step(5, "On the thing: bootstrap, the self-test, then start the agent");
await flashlex(["bootstrap", ...flags]);
await background("thing", ["serve", ...flags], /mqtt\.subscribed/);

step(6, "Ingress: the hub sends the thing a message");
await flashlex(["hub", "send", thingName, "--dir", hubDir], { input: '{"text":"hello, thing"}' });
await Bun.sleep(500);
await flashlex(["messages", "list", ...flags]);

step(7, 'Egress: the thing collects a reading; the hub stores it (its export also holds bootstrap\'s test message, {"foo":"bar"})');
await flashlex(["collect", ...flags], { input: '{"temperature":21.5,"unit":"C"}' });
const archive = join(work, "collected.zip");
await flashlex(["hub", "export", thingName, "--dir", hubDir, "-o", archive]);
for (const [path, bytes] of Object.entries(unzipSync(await Bun.file(archive).bytes()))) {
  if (path.endsWith(".json")) console.log(`    ${path}: ${new TextDecoder().decode(bytes).replace(/\s+/g, " ")}`);
}
await flashlex(["hub", "thing", "list", "--dir", hubDir]);

console.log(`\n${bold("The hub and the thing work: a message each way, over mutual TLS, stored on both sides.")}`);
console.log(`\n${bold("The web console")} (docs/console.md): open http://127.0.0.1:${apiPort}/ and sign in with the operator access token`);
console.log(`  ${operatorToken}`);
if (stayUp) {
  console.log(
    `Both keep running. Try, in another terminal:\n  echo '{"text":"more"}' | ${binary} hub send ${thingName} --dir ${hubDir}\n  ${binary} messages list ${flags.join(" ")}\nCtrl-C stops them and removes ${work}.`,
  );
  await new Promise(() => {});
}
// Without a terminal (a pipe, ssh without -t) nobody can press Ctrl-C: say why it stops now.
console.log(
  `\nNo terminal${opts.exit ? " (--exit)" : ""}: stopping the thing and the hub and removing ${work}. Run \`npm run demo\` in a terminal to keep them up for the console.`,
);
await cleanup(0);
