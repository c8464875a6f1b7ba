/**
 * install-service's check of who else may change what the service runs (src/thing/service/access.ts
 * `writableByOthers`): everyone's write bit, and a group's unless it is root's or the service
 * account's private group (named as the account, no other member).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getentAll } from "../../src/shared/accounts.ts";
import { type ServiceAccount, writableByOthers } from "../../src/thing/service/access.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-service-access-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A directory with `mode`, in group `gid`. */
function directory(name: string, mode: number, gid = 0): string {
  const dir = join(work, name);
  mkdirSync(dir);
  chownSync(dir, process.getuid!(), gid);
  chmodSync(dir, mode);
  return dir;
}

// Debian's `users` group (gid 100) has no members listed here; an account named as a group is its private group
const sharedGroupAccount: ServiceAccount = { name: "nobody", uid: 65534, gid: 100, group: "users", groups: [100] };
const privateGroupAccount: ServiceAccount = { name: "users", uid: 65534, gid: 100, group: "users", groups: [100] };

describe.skipIf(process.getuid?.() !== 0)("writableByOthers (as root, which may give a directory any group)", () => {
  test("writable by the account's primary group: a warning when the group is shared (users), none for its private group (verify pass 32)", () => {
    const dir = directory("group-users", 0o770, 100);
    expect(writableByOthers(dir, sharedGroupAccount)).toBe("0770");
    expect(writableByOthers(dir, privateGroupAccount)).toBeUndefined();
  });

  test("a group that is another user's primary group is shared, though no member is listed (verify pass 33, F8)", () => {
    // Debian's nogroup (65534) lists no member, but is the primary group of nobody, sync and _apt
    const others = getentAll("passwd").filter((user) => user[3] === "65534" && user[0] !== "nogroup");
    expect(others.length).toBeGreaterThan(0);
    const namedAsTheGroup: ServiceAccount = { name: "nogroup", uid: 65533, gid: 65534, group: "nogroup", groups: [65534] };
    expect(writableByOthers(directory("group-nogroup", 0o770, 65534), namedAsTheGroup)).toBe("0770");
  });

  test("root's group is not others; everyone's write bit is, sticky only where that is enough (the folder's parent)", () => {
    expect(writableByOthers(directory("root-group", 0o770, 0), sharedGroupAccount)).toBeUndefined();
    expect(writableByOthers(directory("everyone", 0o777), privateGroupAccount)).toBe("0777");
    const sticky = directory("sticky", 0o1777);
    expect(writableByOthers(sticky, privateGroupAccount)).toBe("01777");
    expect(writableByOthers(sticky, privateGroupAccount, { stickyIsEnough: true })).toBeUndefined();
    expect(writableByOthers(join(work, "not-there"), privateGroupAccount)).toBeUndefined();
  });
});
