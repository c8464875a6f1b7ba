/**
 * `flashlex hub thing delete` against the compiled binary: the same use case as
 * `DELETE /things/{id}` (the thing, its messages, its distribution go; the name can be used
 * again), 65 for a thing that does not exist, 64 without one. Loopback only, no hub serve.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binaryPath, run } from "../support/binary.ts";
import { type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-thing-delete-"));
let hub: HubFixture;

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("hub thing delete", () => {
  test("deletes the thing and its distribution; the name can be used again", async () => {
    const made = await hub.createThing("doomed");
    const zip = join(hub.dir, "dists", `${made.id}.zip`);
    expect(existsSync(zip)).toBe(true);
    const deleted = await run(["hub", "thing", "delete", "doomed", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain(`deleted ${made.name} (id ${made.id})`);
    expect((await hub.things()).some((t) => t.id === made.id)).toBe(false);
    expect(existsSync(zip)).toBe(false);
    const again = await hub.createThing("doomed");
    expect(again.id).not.toBe(made.id);
  }, 60_000);

  test("a thing that does not exist is 65; no thing named is 64", async () => {
    const missing = await run(["hub", "thing", "delete", "nosuch", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(missing.code).toBe(65);
    expect(missing.stderr).toContain('no thing "nosuch"');
    expect((await run(["hub", "thing", "delete", "--dir", hub.dir], { timeoutMs: 30_000 })).code).toBe(64);
  }, 30_000);
});
