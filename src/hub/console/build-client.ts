/**
 * Bundles the console's browser script (client/main.ts, plain TypeScript, no framework) into one
 * minified ES module. `bun run build` (scripts/build.ts) writes it to generated/console-client.js
 * before compiling, and the binary embeds that file (assets.ts); a hub run from source bundles
 * it in memory instead, so `bun src/main.ts hub serve` needs no build step and never serves a
 * stale script. Only Bun can run this (Bun.build).
 */
import { join } from "node:path";

/** The browser script's entry point. */
export const CLIENT_ENTRY = join(import.meta.dir, "client", "main.ts");

/** The largest script the console may ship (bytes): the bound. */
export const MAX_CLIENT_BYTES = 100 * 1024;

/**
 * Returns the bundled script. Throws when the bundler fails (its messages) or the result is
 * over MAX_CLIENT_BYTES.
 */
export async function bundleConsoleClient(): Promise<string> {
  const result = await Bun.build({ entrypoints: [CLIENT_ENTRY], target: "browser", format: "esm", minify: true, sourcemap: "none" });
  if (!result.success || result.outputs.length !== 1) {
    throw new Error(`bundling the console script failed:\n${result.logs.map((l) => String(l)).join("\n")}`);
  }
  const text = await result.outputs[0]!.text();
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_CLIENT_BYTES) throw new Error(`the console script is ${bytes} bytes, over the ${MAX_CLIENT_BYTES}-byte bound`);
  return text;
}
