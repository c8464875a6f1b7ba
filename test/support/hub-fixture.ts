/**
 * A hub home on loopback, made by the compiled binary as a user would (`hub init`, `hub thing
 * create`, `hub thing dist`, unzip), with the embedded broker bound to 127.0.0.1.
 *
 *   const hub = await makeHubFixture(work);
 *   const thing = await hub.createThing("sturdy");      // unpacked distribution, -c/-k/-d flags
 *   const serving = await hub.serve();                   // `hub serve`, waits for hub.started
 *   await hub.publish(thing.id, { n: 1 });               // the operator API's publish route
 *   const device = await hub.enrol("kitchen", dir);      // `enroll-token create`, then `flashlex enroll`
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { type Background, type RunResult, run, start } from "./binary.ts";
import { type ProvisionedThing, provisionThing } from "./distribution.ts";
import { freePort } from "./mosquitto.ts";

export type HubThing = ProvisionedThing;

/** What `hub enroll-token create --json` prints. */
export interface EnrolToken {
  token: string;
  id: string;
  /** the API URL for `enroll --hub` */
  hub: string;
  caFingerprint: string;
  command: string;
}

/** A thing enrolled with `flashlex enroll` into its own folder (docs/enrolment.md): config.yml, keys/, and data/ once it ran. */
export interface EnrolledThing {
  /** the full name, owner prefix included */
  name: string;
  dir: string;
  configPath: string;
  dataDir: string;
  keyFile: string;
  certFile: string;
}

export interface HubFixture {
  dir: string;
  apiPort: number;
  brokerPort: number;
  token: string;
  /** runs `flashlex ...`; throws with the output when it does not exit 0 */
  flashlex(args: string[], input?: string): Promise<RunResult>;
  createThing(name: string, extraArgs?: string[]): Promise<HubThing>;
  /** `hub serve --dir`, waiting for `hub.started` */
  serve(extraArgs?: string[], env?: Record<string, string>): Promise<Background>;
  /** POST /things/{id}/publish with `{"message": message}`; returns the hub's message id */
  publish(thingId: string, message: unknown): Promise<string>;
  /** `hub enroll-token create --json`, with `args` (--max-uses, --expires, --name-prefix) */
  enrollToken(args?: string[]): Promise<EnrolToken>;
  /** a new single-use token, then `flashlex enroll` with the printed fingerprint into `dir`; throws unless it exits 0 */
  enrol(typedName: string, dir: string): Promise<EnrolledThing>;
  /** `hub thing list --json` */
  things(): Promise<any[]>;
  /** sets values in hub.yml below `hub` (`[["certificates", "thingLifetime"], "30s"]`); read when `hub serve` starts */
  configure(values: [string[], unknown][]): void;
  /** GET /things/{id}/messages?messagetype=ingress */
  ingress(thingId: string): Promise<{ flmessagespk: string; payload: any; delivery: string }[]>;
  /** GET /things/{id}/messages?messagetype=egress */
  egress(thingId: string): Promise<{ flmessagespk: string; payload: any }[]>;
}

/**
 * `hub init` for a hub whose things run on this machine: the API at 127.0.0.1:`apiPort`, the
 * broker at 127.0.0.1:`brokerPort`, its certificate for `names` (hub init's default when absent).
 */
export function loopbackHubInit(dir: string, apiPort: number, brokerPort: number, names?: string): string[] {
  return [
    ...["hub", "init", "--dir", dir, "--api-url", `http://127.0.0.1:${apiPort}`, "--broker-host", "127.0.0.1", "--broker-port", String(brokerPort)],
    ...(names ? ["--name", names] : []),
  ];
}

/** Loopback only: the embedded broker listens on 0.0.0.0 unless hub.yml says otherwise. */
export function listenOnLoopback(hubDir: string): void {
  const file = join(hubDir, "hub.yml");
  const settings = parseDocument(readFileSync(file, "utf8"));
  settings.setIn(["hub", "broker", "listenHost"], "127.0.0.1");
  writeFileSync(file, settings.toString());
}

export async function makeHubFixture(work: string): Promise<HubFixture> {
  const dir = join(work, "hub");
  const [apiPort, brokerPort] = [await freePort(), await freePort()];
  const flashlex = async (args: string[], input?: string) => {
    const result = await run(args, { input, timeoutMs: 60_000 });
    if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
    return result;
  };
  const init = await flashlex([...loopbackHubInit(dir, apiPort, brokerPort, "127.0.0.1"), "--json"]);
  const token = JSON.parse(init.stdout).token as string;
  listenOnLoopback(dir);
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${apiPort}/dev/v1${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...init.headers },
      signal: AbortSignal.timeout(15_000),
    });

  const messages = async (thingId: string, type: "ingress" | "egress") => {
    const response = await api(`/things/${thingId}/messages?messagetype=${type}`);
    if (response.status !== 200) throw new Error(`messages answered ${response.status}`);
    return ((await response.json()) as { result: { flmessagespk: string; payload: any; delivery: string }[] }).result;
  };
  const enrollToken = async (args: string[] = []) =>
    JSON.parse((await flashlex(["hub", "enroll-token", "create", "--dir", dir, "--json", ...args])).stdout) as EnrolToken;

  return {
    dir,
    apiPort,
    brokerPort,
    token,
    flashlex,
    createThing: (name, extraArgs = []) => provisionThing(flashlex, dir, work, name, extraArgs),
    async serve(extraArgs = [], env) {
      const hub = start(["hub", "serve", "--dir", dir, ...extraArgs], { env });
      await hub.waitFor(/hub\.started/, 30_000);
      return hub;
    },
    enrollToken,
    async enrol(typedName, thingDir) {
      const t = await enrollToken();
      const enrolled = await flashlex([
        "enroll",
        "--hub",
        t.hub,
        "--token",
        t.token,
        "--ca-fingerprint",
        t.caFingerprint,
        "--name",
        typedName,
        "--dir",
        thingDir,
      ]);
      const name = enrolled.stdout.match(/enrolled (\S+)/)![1]!;
      const keys = join(thingDir, "keys");
      return {
        name,
        dir: thingDir,
        configPath: join(thingDir, "config.yml"),
        dataDir: join(thingDir, "data"),
        keyFile: join(keys, `${name}-keypair-private.pem`),
        certFile: join(keys, `${name}-certificate.pem`),
      };
    },
    async things() {
      return JSON.parse((await flashlex(["hub", "thing", "list", "--dir", dir, "--json"])).stdout);
    },
    configure(values) {
      const file = join(dir, "hub.yml");
      const settings = parseDocument(readFileSync(file, "utf8"));
      for (const [path, value] of values) settings.setIn(["hub", ...path], value);
      writeFileSync(file, settings.toString());
    },
    async publish(thingId, message) {
      const response = await api(`/things/${thingId}/publish`, { method: "POST", body: JSON.stringify({ message }) });
      const body = (await response.json()) as { result: { flmessagespk: string } };
      if (response.status !== 200) throw new Error(`publish answered ${response.status}: ${JSON.stringify(body)}`);
      return body.result.flmessagespk;
    },
    ingress: (thingId) => messages(thingId, "ingress"),
    egress: (thingId) => messages(thingId, "egress"),
  };
}
