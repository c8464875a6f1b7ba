import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath } from "../test/support/binary.ts";
import { makeHubFixture } from "../test/support/hub-fixture.ts";
import { collectUrl, tokenFor } from "./lib/hub.ts";
import { startLogged } from "./lib/procs.ts";

const work = "/tmp/prof/work";
const hub = await makeHubFixture(work);
const thing = await hub.createThing("bench-load");
const serving = startLogged([binaryPath(), "hub", "serve", "--dir", hub.dir], join(work, "hub.log"), {
  BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=/tmp/prof/out`,
});
await serving.waitFor(/hub\.started/, 30_000);
const token = await tokenFor(thing);
const script = join(work, "c.lua");
writeFileSync(
  script,
  `wrk.method = "POST"
wrk.body = '{"temperature":21.5}'
local counter = 0
function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4000-8000-%012x", math.random(0, 2^30), 1, counter)
  return wrk.format(nil, nil, { ["Host"] = wrk.headers["Host"], ["Authorization"] = "Bearer ${token}", ["Content-Type"] = "application/json", ["X-Flashlex-Message-Id"] = id }, nil)
end`,
);
const p = Bun.spawn(["wrk", "-t", "2", "-c", "32", "-d", "6s", "--latency", "-s", script, collectUrl(hub, thing)], { stdout: "pipe" });
console.log(await new Response(p.stdout).text());
serving.proc.kill("SIGTERM");
await serving.proc.exited;
