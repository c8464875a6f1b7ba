import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TakeoverDetector } from "../../src/hub/broker/takeover.ts";
import { hubInstance, instanceFile } from "../../src/hub/home/instance.ts";
import { HUB_INSTANCE } from "../../src/hub/home/settings.ts";

const root = mkdtempSync(join(tmpdir(), "flashlex-instance-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("a hub's instance name", () => {
  test("derived from the host and the home's real path: a copy, or another machine, gets its own; a symlink or a restart the same", () => {
    const home = join(root, "hub-a");
    mkdirSync(home);
    const a = hubInstance({ dir: home }, {}, "pi-1");
    expect(a.from).toBe("derived");
    expect(HUB_INSTANCE.test(a.name)).toBe(true);
    expect(hubInstance({ dir: home }, {}, "pi-1")).toEqual(a); // a restart
    const copy = join(root, "hub-b");
    cpSync(home, copy, { recursive: true });
    expect(hubInstance({ dir: copy }, {}, "pi-1").name).not.toBe(a.name);
    expect(hubInstance({ dir: home }, {}, "pi-2").name).not.toBe(a.name); // the same path on another machine
    const link = join(root, "link");
    symlinkSync(home, link);
    expect(hubInstance({ dir: link }, {}, "pi-1").name).toBe(a.name);
    expect(hubInstance({ dir: home }, { instance: "east" }, "pi-1")).toEqual({ name: "east", from: "hub.yml" });
  });

  test("an earlier hub's instance file is kept (its broker session resumes); a bad one is a config error naming the file", () => {
    const home = join(root, "old");
    mkdirSync(home);
    writeFileSync(instanceFile({ dir: home }), "0a1b2c3d\n");
    expect(hubInstance({ dir: home }, {})).toEqual({ name: "0a1b2c3d", from: "file" });
    writeFileSync(instanceFile({ dir: home }), "Not A Name\n");
    expect(() => hubInstance({ dir: home }, {})).toThrow(`${instanceFile({ dir: home })}: not a hub instance name`);
  });
});

describe("a client id clash seen from one side", () => {
  test("three connections in a row closed within seconds report once; a lasting one ends the episode", () => {
    const d = new TakeoverDetector(10_000, 3);
    const reports: boolean[] = [];
    let t = 0;
    const cycle = (lastMs: number) => {
      d.connected(t);
      t += lastMs;
      reports.push(d.closed(t));
      t += 2_000;
    };
    for (let i = 0; i < 6; i++) cycle(500);
    expect(reports).toEqual([false, false, true, false, false, false]);
    cycle(60_000); // stable for a minute: over
    for (let i = 0; i < 3; i++) cycle(500);
    expect(reports.slice(6)).toEqual([false, false, false, true]);
    expect(d.closed(t)).toBe(false); // a refused attempt (no connection open) is not counted
  });
});
