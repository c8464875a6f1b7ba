import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { unzipSync } from "fflate";

/**
 * Unpacks a thing's distribution zip into `dir` the way a user's `unzip` does, with the private
 * key owner-only (bootstrap checks that). Returns the thing's directory, `dir/<thing name>`.
 */
export function unpackDistribution(zipPath: string, dir: string, thingName: string): string {
  for (const [path, bytes] of Object.entries(unzipSync(readFileSync(zipPath)))) {
    const target = join(dir, path);
    mkdirSync(dirname(target), { recursive: true });
    if (!path.endsWith("/")) (writeFileSync(target, bytes), chmodSync(target, path.includes("private") ? 0o600 : 0o644));
  }
  return join(dir, thingName);
}
