import { join } from "node:path";
import { ROOT } from "../../scripts/build.ts";

/**
 * The compiled binary a bench measures: $FLASHLEX_BIN when set, else this machine's build in
 * dist/, built first (scripts/build.ts --host) unless `noBuild`. Exits 1 with the build's output
 * when the build fails. Sets $FLASHLEX_BIN, so test/support's binaryPath() runs the same one.
 */
export function hostBinary(noBuild: boolean): string {
  let binary = process.env.FLASHLEX_BIN ?? join(ROOT, "dist", "flashlex-linux-x64");
  if (!process.env.FLASHLEX_BIN && !noBuild) {
    console.error("building the host binary (scripts/build.ts --host)");
    const build = Bun.spawnSync([process.execPath, join(ROOT, "scripts/build.ts"), "--host"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (!build.success) {
      console.error(build.stdout.toString(), build.stderr.toString());
      process.exit(1);
    }
    binary = join(ROOT, "dist", `flashlex-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
  }
  process.env.FLASHLEX_BIN = binary;
  return binary;
}
