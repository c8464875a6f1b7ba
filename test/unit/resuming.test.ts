import { expect, test } from "bun:test";
import { FlashlexError } from "../../src/shared/errors.ts";
import type { ThingAccess } from "../../src/thing/local/access.ts";
import { LostServeError } from "../../src/thing/local/client.ts";
import { resumingAccess } from "../../src/thing/local/resuming.ts";

/** An access through a serve that goes away (`lost`) on the calls `fail` names, and counts what it was asked. */
function serveThatGoes(name: string, fail: (call: string) => LostServeError | undefined, log: string[]): ThingAccess {
  const answer = <T>(call: string, value: T) => {
    log.push(`${name}.${call}`);
    const lost = fail(call);
    return lost ? Promise.reject(lost) : Promise.resolve(value);
  };
  return {
    via: name === "file" ? "database" : "serve",
    served: true,
    listMessages: () => answer("listMessages", []),
    listOutbox: () => answer("listOutbox", []),
    ackMessages: (ids) => answer("ackMessages", [...ids]),
    deleteMessages: (ids) => answer("deleteMessages", [...ids]),
    retryOutbox: (ids) => answer("retryOutbox", { changed: [...ids], missing: [], sent: [] }),
    resendOutbox: () => answer("resendOutbox", { changed: ["m"], missing: [], sent: [] }),
    dropOutbox: (ids) => answer("dropOutbox", { changed: [...ids], missing: [], sent: [] }),
    collect: () => answer("collect", { messageId: "m", outcome: "queued" as const }),
    close: () => void log.push(`${name}.close`),
  };
}

const cut = () => new LostServeError("the running serve (s): connection reset (ECONNRESET)", "unavailable", true);
const gone = () => new LostServeError("the running serve (s): no such file or directory (ENOENT)", "io", false);

test("a read that meets a serve restart is asked again of the next serve or the file (it failed with 74 or 69, which say 'disk' and 'queued')", async () => {
  const log: string[] = [];
  const access = resumingAccess(
    serveThatGoes("old", () => cut(), log),
    async () => serveThatGoes("file", () => undefined, log),
  );
  expect(await access.listMessages({})).toEqual([]);
  expect(await access.listOutbox()).toEqual([]);
  expect(access.via).toBe("database");
  expect(log).toEqual(["old.listMessages", "old.close", "file.listMessages", "file.listOutbox"]);
});

test("a change serve never had is asked again; one cut off after it was sent is 75 'may have been done', never asked twice", async () => {
  const log: string[] = [];
  const unasked = resumingAccess(
    serveThatGoes("old", () => gone(), log),
    async () => serveThatGoes("new", () => undefined, log),
  );
  expect(await unasked.deleteMessages([3])).toEqual([3]);
  expect(log).toEqual(["old.deleteMessages", "old.close", "new.deleteMessages"]);
  log.length = 0;
  const asked = resumingAccess(
    serveThatGoes("old", () => cut(), log),
    async () => serveThatGoes("new", () => undefined, log),
  );
  for (const change of [() => asked.ackMessages([1]), () => asked.deleteMessages([1]), () => asked.retryOutbox(["a"]), () => asked.dropOutbox(["a"])]) {
    const err = await change().catch((e) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    expect({ kind: err.kind, message: err.message }).toEqual({
      kind: "try-later",
      message: "the running serve (s): connection reset (ECONNRESET): it went away with the request, which may have been done; list to see",
    });
  }
  expect(log).toEqual(["old.ackMessages", "old.deleteMessages", "old.retryOutbox", "old.dropOutbox"]);
});

test("a collect is never asked again here, and a serve that keeps going away is the error after 3 tries", async () => {
  const log: string[] = [];
  const access = resumingAccess(
    serveThatGoes("a", () => cut(), log),
    async () => serveThatGoes("b", () => cut(), log),
  );
  expect(await access.collect("{}", "http").catch((e) => e)).toBeInstanceOf(LostServeError);
  expect(log).toEqual(["a.collect"]);
  expect(await access.listMessages({}).catch((e) => e)).toBeInstanceOf(LostServeError);
  expect(log.filter((l) => l.endsWith("listMessages"))).toHaveLength(4);
  // and another error is not a serve going away: passed on at once
  const refused = resumingAccess(
    { ...serveThatGoes("c", () => undefined, log), listMessages: () => Promise.reject(new FlashlexError("state must be ...", "usage")) },
    async () => {
      throw new Error("not reopened");
    },
  );
  expect((await refused.listMessages({}).catch((e) => e)).kind).toBe("usage");
});
