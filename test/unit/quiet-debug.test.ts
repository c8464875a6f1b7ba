/**
 * scripts/quiet-debug.ts: the binaries' `debug` is one empty function unless DEBUG is set, and
 * the real package when it is (MQTT.js's traces stay available on a device).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { quietDebugPlugin } from "../../scripts/quiet-debug.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-quiet-debug-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** mqtt-packet's own parser module, bundled as the binaries bundle it, and a logger of MQTT.js's kind. */
async function bundle(): Promise<string> {
  const entry = join(dir, "entry.ts");
  writeFileSync(
    entry,
    // mqtt-packet from this repository's node_modules (the entry is outside it); "debug" stays bare, as the libraries name it
    `import ${JSON.stringify(join(import.meta.dir, "../../node_modules/mqtt-packet/parser.js"))};
     import createDebug from "debug";
     const a = createDebug("mqttjs:client");
     a("a trace line %s", "here");
     a("publish :: message %s", JSON.stringify({ token: "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ1cm46dGhpbmc6eCJ9.c2lnbmF0dXJlLXNlY3JldA" }));
     console.log(JSON.stringify({ shared: a === createDebug("mqttjs:other"), enabled: a.enabled }));`,
  );
  const result = await Bun.build({ entrypoints: [entry], target: "bun", outdir: join(dir, "out"), plugins: [quietDebugPlugin], throw: false });
  expect(result.logs.join("\n")).toBe("");
  expect(result.success).toBe(true);
  return result.outputs[0]!.path;
}

function run(file: string, env: Record<string, string | undefined>) {
  const proc = Bun.spawnSync([process.execPath, file], { env: { ...process.env, DEBUG: undefined, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: proc.exitCode, out: proc.stdout.toString().trim(), err: proc.stderr.toString() };
}

test("without DEBUG every logger is the one empty function; with DEBUG the real package traces", async () => {
  const file = await bundle();
  const quiet = run(file, {});
  expect(quiet).toEqual({ code: 0, out: JSON.stringify({ shared: true, enabled: false }), err: "" });
  const traced = run(file, { DEBUG: "mqttjs*" });
  expect(traced.code).toBe(0);
  expect(JSON.parse(traced.out)).toEqual({ shared: false, enabled: true });
  expect(traced.err).toContain("mqttjs:client a trace line here");
  // a signed token in a traced payload keeps its header and claims, not its signature
  expect(traced.err).toContain('"token":"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ1cm46dGhpbmc6eCJ9.<signature redacted>"');
  expect(traced.err).not.toContain("c2lnbmF0dXJlLXNlY3JldA");
});
