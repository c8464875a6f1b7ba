import { expect, test } from "bun:test";
import { join } from "node:path";

const demo = join(import.meta.dir, "../../scripts/demo.ts");

test("npm run demo: a wrong option or port, or one in use, is one line and exit 64, before anything is built or made (new-user pass 24, F8; verify pass 30, F8)", () => {
  const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  for (const [args, said] of [
    [["--api-port", "99999"], "demo: --api-port 99999: expected a TCP port, 1 to 65535"],
    [["--broker-port", "http"], "demo: --broker-port http: expected a TCP port, 1 to 65535"],
    [["--api-port", "47123", "--broker-port", "47123"], "demo: --api-port and --broker-port are both 47123: give the hub two ports"],
    [["--port", "1"], "demo: Unknown option '--port'"],
    [["--api-port", "-1"], "demo: Option '--api-port' argument is ambiguous."],
    [["--api-port", "47124", "--api-port", "47125"], "demo: --api-port given twice: give it once"],
    [
      ["--broker-port", String(busy.port)],
      `demo: --broker-port ${busy.port}: something on this machine already listens on 127.0.0.1:${busy.port}; choose another`,
    ],
  ] as const) {
    const run = Bun.spawnSync([process.execPath, demo, ...args], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    expect({ code: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString().split("\n")[0] }).toEqual({ code: 64, stdout: "", stderr: said });
  }
  busy.stop(true);
});
