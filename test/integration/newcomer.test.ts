/**
 * The README's path, as a new user walks it, with only the bare and short forms it shows:
 * `hub thing create NAME` (the zip lands in the current directory), unzip, the binary moved into
 * the thing's folder, then in that folder `./flashlex bootstrap`, `./flashlex install-service`
 * (its unit printed with --dry-run: systemd does not run here), `serve` started with exactly
 * the unit's ExecStart= line from `/` (systemd's working directory), `hub send`,
 * `./flashlex messages list`, `./flashlex collect`. No flag the README does not show, no error.
 * And the path the README leads with: `hub enroll-token create`, the line it prints run as
 * `./flashlex enroll ...` in the thing's folder, then the same bare commands.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ordinaryAccount } from "../support/accounts.ts";
import { binaryPath, type RunResult, run, start } from "../support/binary.ts";
import { unpackDistribution } from "../support/distribution.ts";
import { makeHubFixture } from "../support/hub-fixture.ts";
import { waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-newcomer-"));
// mkdtemp makes it 0700 (root's); the folders inside stand for /home/pi, which the Pi user (the
// service user) can enter: install-service checks that it can reach every file serve opens.
chmodSync(work, 0o711);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** `dir` and everything below it. */
function treeOf(dir: string): string[] {
  return [dir, ...readdirSync(dir, { recursive: true, encoding: "utf8" }).map((entry) => join(dir, entry))];
}

function explain(result: RunResult): string {
  return `exit ${result.code}\n${result.stdout}\n${result.stderr}`;
}

test("hub -> thing -> device -> service -> a message each way, with the README's bare commands", async () => {
  const hub = await makeHubFixture(work);
  const hubProcess = await hub.serve();
  try {
    // 2. A thing: `hub thing create mything` writes ./<name>.zip where the operator stands.
    const operator = join(work, "operator");
    mkdirSync(operator);
    const created = await run(["hub", "thing", "create", "mything", "--dir", hub.dir], { cwd: operator });
    expect(created.code, explain(created)).toBe(0);
    const name = /created thing (\S+)/.exec(created.stdout)![1]!;
    const zip = join(operator, `${name}.zip`);
    expect(existsSync(zip)).toBe(true);
    // Or fetched on the device: the command create names prints a one-time line, which holds a
    // token for this zip alone (never the operator's, which is admin over the hub).
    expect(created.stdout).toContain(`(or fetch the zip there: flashlex hub thing dist ${name} --curl --dir ${hub.dir})`);
    expect(created.stdout).not.toContain(hub.token);
    const asked = await run(["hub", "thing", "dist", name, "--curl", "--dir", hub.dir], { cwd: operator });
    expect(asked.code, explain(asked)).toBe(0);
    expect(asked.stdout).not.toContain(hub.token);
    const said = asked.stdout.split("\n").find((l) => l.includes("curl -fo"))!;
    const line = said.slice(said.indexOf("(umask 077;"));
    // the token goes to curl on stdin, from the shell's own echo: not in curl's arguments,
    // where any user of the device reads it in ps while it runs (attack round 25, F4)
    expect(line).toMatch(/echo 'Authorization: Bearer flxd_[\w-]{43}' \| curl -fo \S+ -H @- http/);
    expect(line.slice(line.indexOf("| curl"))).not.toContain("flxd_");
    // Pasted on the device: the zip it saves holds the private key, so it is the user's alone
    // whatever the umask (it was 0644), and also over an older copy of the zip that was 0644
    // (curl kept that file's mode: attack round 25, F5). Pasted again, it is refused and the zip
    // stays whole.
    const device = join(work, "device-download");
    mkdirSync(device);
    writeFileSync(join(device, `${name}.zip`), "an older copy", { mode: 0o644 });
    const paste = () => Bun.spawnSync(["sh", "-c", `umask 022; ${line}`], { cwd: device, stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    const pasted = paste();
    expect(pasted.exitCode, pasted.stderr.toString()).toBe(0);
    expect(statSync(join(device, `${name}.zip`)).mode & 0o777).toBe(0o600);
    const again = paste();
    // curl -f alone said only "error: 401" (new-user pass 24, F9)
    expect(again.exitCode).toBe(1);
    expect(again.stderr.toString()).toContain("401");
    expect(again.stdout.toString()).toBe(
      `the download failed (the line above says why): a 401 means this line was used or is past its time, so ask the hub operator for a new one (flashlex hub thing dist ${name} --curl); after any other error, run the same line again\n`,
    );
    expect(readFileSync(join(device, `${name}.zip`)).equals(readFileSync(zip))).toBe(true);

    // 3. The device: unzip, the binary into the thing's folder, cd there.
    const pi = join(work, "home-pi");
    const folder = unpackDistribution(zip, pi, name);
    const flashlex = join(folder, "flashlex");
    copyFileSync(binaryPath(), flashlex);
    chmodSync(flashlex, 0o755);
    // the Pi user's files, as unzip leaves them for them (the service never runs as root)
    const owner = ordinaryAccount();
    // The Pi user unzipped it: every file of the folder is theirs (the keys inside keys/ too).
    for (const path of [pi, ...treeOf(folder)]) chownSync(path, owner.uid, owner.gid);
    const here = (args: string[], input?: string) => run(args, { command: [flashlex], cwd: folder, input, timeoutMs: 60_000 });

    const boot = await here(["bootstrap"]);
    expect(boot.code, explain(boot)).toBe(0);
    expect(boot.stdout).toContain(`${join(folder, "config.yml")} (found in the current directory)`);

    // 4. The service: the unit install-service writes (systemd does not run here: --dry-run shows it).
    // bootstrap ran as root here (the test's user) and made data/: give it to the Pi user, who runs it on a device
    for (const path of treeOf(folder)) chownSync(path, owner.uid, owner.gid);
    const unit = await here(["install-service", "--dry-run"]);
    expect(unit.code, explain(unit)).toBe(0);
    const execStart = /^ExecStart=(.+)$/m.exec(unit.stdout)![1]!.split(" ");
    expect(execStart).toEqual([flashlex, "serve", "-c", join(folder, "config.yml"), "-k", join(folder, "keys"), "-d", join(folder, "data")]);
    // systemd starts it from / with no other flags than the unit's
    const serve = start(execStart.slice(1), { command: [execStart[0]!], cwd: "/" });
    try {
      await serve.waitFor(/mqtt\.subscribed/, 30_000);
      expect(serve.output()).toContain(`configFrom="given with -c"`);

      // 5. Messages each way.
      const sent = await hub.flashlex(["hub", "send", "mything", "--dir", hub.dir], '{"text":"hello, thing"}');
      expect(sent.stdout).toContain(`sent to ingress/${name}`);
      const listed = await waitUntil("the message listed on the thing", async () => {
        const result = await here(["messages", "list"]);
        return result.code === 0 && result.stdout.includes("hello, thing") ? result : undefined;
      });
      expect(listed.stdout).toContain(`ingress/${name}`);
      const collected = await here(["collect"], '{"temperature":21.5}');
      expect(collected.code, explain(collected)).toBe(0);
      expect(collected.stdout).toContain("status code: 200");
    } finally {
      expect(await serve.stop()).toBe(0);
    }

    // From the folder above, a bare command says where the config is.
    const lost = await run(["messages", "list"], { command: [flashlex], cwd: pi });
    expect(lost.code).toBe(0); // the binary's own folder holds config.yml: found beside the binary
    const elsewhere = await run(["messages", "list"], { cwd: pi });
    expect(elsewhere.code).toBe(64);
    expect(elsewhere.stderr).toContain(`found ${name}/config.yml: cd ${name}, or pass -c ${name}/config.yml`);
  } finally {
    expect(await hubProcess.stop()).toBe(0);
  }
}, 120_000);

test("the README's lead path: an enrolment token on the hub, `./flashlex enroll` with the printed line in the thing's folder, then the same bare commands", async () => {
  const hub = await makeHubFixture(join(work, "enrol"));
  const hubProcess = await hub.serve();
  try {
    // 2. On the hub: the token, and the exact line to run on the device.
    const token = await hub.flashlex(["hub", "enroll-token", "create", "--dir", hub.dir]);
    // The token travels in the environment (ps shows arguments): FLASHLEX_ENROLL_TOKEN=... ./flashlex enroll ...
    const printed = /^ {2}FLASHLEX_ENROLL_TOKEN=(flxe_\S+) \.\/flashlex (enroll --hub \S+ --ca-fingerprint \S+ --name NAME)$/m.exec(token.stdout);
    expect(printed, token.stdout).not.toBeNull();
    const [, enrolToken, line] = printed!;

    // 3. The device: the binary in an empty folder, the printed line run there as ./flashlex with NAME filled in.
    const folder = join(work, "enrol-pi", "mything");
    mkdirSync(folder, { recursive: true });
    const flashlex = join(folder, "flashlex");
    copyFileSync(binaryPath(), flashlex);
    chmodSync(flashlex, 0o755);
    const here = (args: string[], input?: string, env?: Record<string, string>) =>
      run(args, { command: [flashlex], cwd: folder, input, env, timeoutMs: 60_000 });
    const enrolled = await here(line!.replace(/NAME$/, "mything").split(" "), undefined, { FLASHLEX_ENROLL_TOKEN: enrolToken! });
    expect(enrolled.code, explain(enrolled)).toBe(0);
    expect(enrolled.stdout).not.toContain("--token");
    const name = /enrolled (\S+)/.exec(enrolled.stdout)![1]!;
    expect(name).toEndWith("-mything");
    // the Pi user enrols as themselves (the README says so): their files, as the service needs
    const owner = ordinaryAccount();
    for (const path of treeOf(folder)) chownSync(path, owner.uid, owner.gid);

    const boot = await here(["bootstrap"]);
    expect(boot.code, explain(boot)).toBe(0);
    // bootstrap ran as root here (the test's user) and made data/: give it to the Pi user, who runs it on a device
    for (const path of treeOf(folder)) chownSync(path, owner.uid, owner.gid);
    const unit = await here(["install-service", "--dry-run"]);
    expect(unit.code, explain(unit)).toBe(0);
    const execStart = /^ExecStart=(.+)$/m.exec(unit.stdout)![1]!.split(" ");
    const serve = start(execStart.slice(1), { command: [execStart[0]!], cwd: "/" });
    try {
      await serve.waitFor(/mqtt\.subscribed/, 30_000);
      const sent = await hub.flashlex(["hub", "send", "mything", "--dir", hub.dir], '{"text":"hello, enrolled thing"}');
      expect(sent.stdout).toContain(`sent to ingress/${name}`);
      await waitUntil("the message listed on the thing", async () => {
        const result = await here(["messages", "list"]);
        return result.code === 0 && result.stdout.includes("hello, enrolled thing") ? result : undefined;
      });
      const collected = await here(["collect"], '{"temperature":21.5}');
      expect(collected.code, explain(collected)).toBe(0);
      expect(collected.stdout).toContain("status code: 200");
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  } finally {
    expect(await hubProcess.stop()).toBe(0);
  }
}, 120_000);
