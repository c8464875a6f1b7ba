/**
 * An ordinary account for files a service must not own as root: the caller, or (as root, as in
 * CI) the first account in /etc/passwd that is neither root nor nobody.
 */
import { readFileSync } from "node:fs";

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

export function ordinaryAccount(): Account {
  const rows = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .map((l) => l.split(":"))
    .filter((f) => f.length >= 4)
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]) }));
  const self = process.getuid?.() ?? 0;
  const found = self === 0 ? rows.find((r) => r.uid > 0 && r.uid < 65534 && r.gid < 65534) : rows.find((r) => r.uid === self);
  if (!found) throw new Error("no ordinary user in /etc/passwd to own the test files");
  return found;
}
