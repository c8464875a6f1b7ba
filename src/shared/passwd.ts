/**
 * The system's user database as /etc/passwd holds it, read directly. Not accounts.ts's getent:
 * the modules that need it here load with every command (process-entry.ts), and
 * node:child_process would then too.
 */
import { readFileSync } from "node:fs";

/** The name /etc/passwd gives `uid`, else undefined (a uid without an entry). */
export function accountName(uid: number): string | undefined {
  return passwdEntryOf(uid)?.name;
}

/**
 * The name, primary gid and home /etc/passwd gives `uid`; undefined for a uid not there (or no
 * file to read: a minimal container).
 */
export function passwdEntryOf(uid: number): { name: string; gid: number; home: string } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const fields = line.split(":");
      if (fields.length >= 6 && Number(fields[2]) === uid && fields[2] !== "") return { name: fields[0]!, gid: Number(fields[3]), home: fields[5]! };
    }
  } catch {
    // no passwd file
  }
  return undefined;
}

/** How messages name a user: "pi (uid 1000)", or "uid 1234" for a uid /etc/passwd does not name. */
export function userLabel(uid: number): string {
  const name = accountName(uid);
  return name ? `${name} (uid ${uid})` : `uid ${uid}`;
}
