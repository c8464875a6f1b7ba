/**
 * The floors some rows compare against: tiny programs compiled exactly as flashlex is
 * (scripts/build.ts's buildTarget: --compile --minify --bytecode, no .env/bunfig autoload), kept
 * in bench/.cache per Bun version and rebuilt when missing.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { buildTarget, packageVersion } from "../../scripts/build.ts";
import { hostTarget } from "../../scripts/targets.ts";
import type { BenchContext } from "./row.ts";

/** `bench/peers/<name>.ts` compiled for this machine; returns the binary's path. */
export async function compiledFloor(ctx: BenchContext, name: "hello" | "idle" | "mqtt-idle"): Promise<string> {
  const target = hostTarget();
  if (!target) throw new Error("no compile target for this machine");
  const outdir = join(ctx.cache, `${name}-bun-${Bun.version}`);
  const built = join(outdir, `flashlex-${target.name}`);
  if (existsSync(built)) return built;
  ctx.progress(`compiling bench/peers/${name}.ts into ${outdir}`);
  const result = await buildTarget(target, {
    outdir,
    entry: join(import.meta.dir, "../peers", `${name}.ts`),
    version: await packageVersion(),
    commit: "bench",
    bytecode: true,
  });
  return result.file;
}
