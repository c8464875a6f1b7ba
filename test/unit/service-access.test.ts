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
import { groupIsPrivate, type ServiceAccount, writableByOthers } from "../../src/thing/service/access.ts";

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

describe("groupIsPrivate: who else may use a group, from the group and user databases", () => {
  const account: ServiceAccount = { name: "flashlex", uid: 1001, gid: 1001, group: "flashlex", groups: [1001] };
  const groups = [
    ["root", "x", "0", ""],
    ["users", "x", "100", ""],
    ["flashlex", "x", "1001", ""],
  ];
  const users = [
    ["root", "x", "0", "0", "", "/root", "/bin/sh"],
    ["flashlex", "x", "1001", "1001", "", "/home/flashlex", "/bin/sh"],
    ["pi", "x", "1000", "1000", "", "/home/pi", "/bin/sh"],
  ];

  test("the account's private group and root's are its own; a group named otherwise, or not its primary, is not", () => {
    expect(groupIsPrivate(1001, account, groups, users)).toBe(true);
    expect(groupIsPrivate(0, account, groups, users)).toBe(true);
    expect(groupIsPrivate(100, account, groups, users)).toBe(false);
    expect(groupIsPrivate(100, { ...account, gid: 100 }, groups, users)).toBe(false);
  });

  test("another member, another user's primary group, or a second group of that gid under another name makes it shared (verify pass 33, F8; attack round 30, F1 and F4)", () => {
    expect(groupIsPrivate(1001, account, [...groups.slice(0, 2), ["flashlex", "x", "1001", "flashlex,pi"]], users)).toBe(false);
    expect(groupIsPrivate(1001, account, groups, [...users, ["backup", "x", "1002", "1001", "", "/", "/bin/sh"]])).toBe(false);
    expect(groupIsPrivate(1001, account, [...groups, ["shared", "x", "1001", "pi"]], users)).toBe(false);
    expect(groupIsPrivate(0, account, [["root", "x", "0", "pi"], ...groups.slice(1)], users)).toBe(false);
    expect(groupIsPrivate(0, account, groups, [...users, ["toor", "x", "1003", "0", "", "/", "/bin/sh"]])).toBe(false);
    // nothing known of the gid: not taken as the account's
    expect(groupIsPrivate(1001, account, [], users)).toBe(false);
  });
});
