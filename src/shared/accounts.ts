/**
 * The system's user and group database, as systemd and sudo read it: `getent` asks NSS (LDAP,
 * systemd-homed...), and /etc/passwd or /etc/group are read where getent is missing.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** How long getent may take, in ms: it answers at once or is stuck. */
const GETENT_TIMEOUT_MS = 10_000;

/**
 * The entry of `db` whose name or numeric id is `key`, as its colon-separated fields (passwd:
 * name, password, uid, gid, gecos, home, shell), or undefined when there is none. Never throws.
 */
export function getent(db: "passwd" | "group", key: string): string[] | undefined {
  const result = spawnSync("getent", [db, key], { encoding: "utf8", timeout: GETENT_TIMEOUT_MS });
  if (!result.error) return result.status === 0 ? result.stdout.trim().split("\n")[0]?.split(":") : undefined;
  return entriesOf(readEtc(db)).find((f) => f[0] === key || f[2] === key);
}

/**
 * Every entry of `db` the system lists, as getent() gives one (a directory service set not to
 * enumerate, as sssd is by default, lists only its local entries). Never throws: [] when there
 * is nothing to read.
 */
export function getentAll(db: "passwd" | "group"): string[][] {
  const result = spawnSync("getent", [db], { encoding: "utf8", timeout: GETENT_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 });
  return entriesOf(!result.error && result.status === 0 ? result.stdout : readEtc(db));
}

/** /etc/passwd or /etc/group, for where getent is missing; "" when it cannot be read. */
function readEtc(db: "passwd" | "group"): string {
  try {
    return readFileSync(`/etc/${db}`, "utf8");
  } catch {
    return "";
  }
}

/** Lines of a getent database as their colon-separated fields, blank lines left out. */
function entriesOf(text: string): string[][] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => line.split(":"));
}
