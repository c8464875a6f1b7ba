/**
 * The update key every thing pins, with the compiled binary: recorded in hub.db at its first use,
 * so a home whose update-key files were lost, or replaced by another hub's, refuses to create
 * things (78, one line saying to restore them) instead of making a key the fleet made so far would
 * never accept; `hub serve` says so at its start and keeps serving. A home older than updates (no
 * files, nothing recorded) still gets a key on first use.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { run } from "../support/binary.ts";
import { type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-update-key-"));
let fixture: HubFixture;
const keyFiles = ["update-key.pem", "update-key.pub"];

beforeAll(async () => {
  fixture = await makeHubFixture(work);
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const pub = (dir: string) => readFileSync(join(dir, "update-key.pub"), "utf8").trim();
const create = (name: string) => run(["hub", "thing", "create", name, "--dir", fixture.dir, "-o", join(work, `${name}.zip`)], { timeoutMs: 60_000 });
const names = async () => (await fixture.things()).map((t: { name: string }) => t.name.split("-").slice(1).join("-"));

/** The update public key the distribution `name`.zip pins (config.yml flashlex.update.publicKey). */
async function pinned(name: string): Promise<string> {
  const out = join(work, `${name}-unzipped`);
  mkdirSync(out, { recursive: true });
  expect(Bun.spawnSync(["unzip", "-q", "-o", join(work, `${name}.zip`), "-d", out]).exitCode).toBe(0);
  const config = Bun.spawnSync(["find", out, "-name", "config.yml"]).stdout.toString().trim().split("\n")[0]!;
  return String(parseDocument(readFileSync(config, "utf8")).getIn(["flashlex", "update", "publicKey"]));
}

describe("the hub's update key is recorded and never silently replaced", () => {
  test("lost: both files gone after a thing pinned the key is 78, one line naming the key and the fix; no key is made, no thing created", async () => {
    expect((await create("first")).code).toBe(0);
    const original = pub(fixture.dir);
    expect(await pinned("first")).toBe(original);
    mkdirSync(join(work, "kept"));
    for (const file of keyFiles) renameSync(join(fixture.dir, file), join(work, "kept", file));

    const refused = await create("second");
    expect(refused.code).toBe(78);
    const lines = refused.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`update-key.pub and update-key.pem are missing, but this hub's things pin the update key ${original}`);
    expect(lines[0]).toContain("restore update-key.pem and update-key.pub from your backup of the hub home");
    for (const file of keyFiles) expect(existsSync(join(fixture.dir, file))).toBe(false);
    expect(await names()).toEqual(["first"]);
    const key = await run(["hub", "release", "key", "--dir", fixture.dir]);
    expect(key.code).toBe(78);

    for (const file of keyFiles) renameSync(join(work, "kept", file), join(fixture.dir, file));
  }, 90_000);

  test("swapped: another hub's key files are 78 naming both keys; hub serve logs ERROR hub.update_key_unusable at start, serves, and refuses a create", async () => {
    const original = pub(fixture.dir);
    const other = join(work, "other-hub");
    expect((await run(["hub", "init", "--dir", other, "--json"], { timeoutMs: 60_000 })).code).toBe(0);
    mkdirSync(join(work, "original"));
    for (const file of keyFiles) {
      renameSync(join(fixture.dir, file), join(work, "original", file));
      cpSync(join(other, file), join(fixture.dir, file));
    }
    const refused = await create("third");
    expect(refused.code).toBe(78);
    expect(refused.stderr.trim().split("\n")).toEqual([
      expect.stringContaining(`${join(fixture.dir, "update-key.pub")}: ${pub(other)} is not the update key this hub's things pin (${original}, recorded in`),
    ]);

    const hub = await fixture.serve();
    try {
      await hub.waitFor(/ERROR hub\.update_key_unusable .*is not the update key this hub's things pin/, 10_000);
      const answer = await fetch(`http://127.0.0.1:${fixture.apiPort}/dev/v1/things`, {
        method: "POST",
        headers: { Authorization: `Bearer ${fixture.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ name: "fourth" }),
      });
      expect(answer.status).toBe(500);
      expect(await names()).toEqual(["first"]);
    } finally {
      expect(await hub.stop()).toBe(0);
    }
    for (const file of keyFiles) renameSync(join(work, "original", file), join(fixture.dir, file));
    expect((await create("fifth")).code).toBe(0);
    expect(await pinned("fifth")).toBe(original);
  }, 90_000);

  test("a home older than updates (no key files, none recorded) gets a key at its first use, recorded from then on", async () => {
    for (const file of keyFiles) rmSync(join(fixture.dir, file));
    const db = new Database(join(fixture.dir, "hub.db"));
    db.run("DELETE FROM update_key");
    db.close();
    expect((await create("sixth")).code).toBe(0);
    const made = pub(fixture.dir);
    expect(await pinned("sixth")).toBe(made);
    rmSync(join(fixture.dir, "update-key.pub"));
    rmSync(join(fixture.dir, "update-key.pem"));
    expect((await create("seventh")).code).toBe(78);
  }, 90_000);
});
