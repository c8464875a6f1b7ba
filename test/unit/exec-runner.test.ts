/**
 * serve --exec's runner (src/thing/ingress/exec-runner.ts) with a real /bin/sh and a real
 * message database: a handler ended at its timeout or at stop gets its 2 s after SIGTERM to
 * clean up, even when the shell that started it dies first (Debian's dash does not exec the
 * last command of `sh -c`, so the handler is the shell's child), and nothing of its process
 * group is left afterwards.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/shared/log.ts";
import { ExecRunner, exitMeaning } from "../../src/thing/ingress/exec-runner.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-exec-runner-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Whether a process with this pid still runs (an exited one its reaper has not waited for yet, a zombie, does not). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("a handler ended by serve", () => {
  test("gets its grace after SIGTERM though its shell dies at once; its group is gone afterwards", async () => {
    const store = MessageStore.open(join(dir, "subscription.db"));
    const cleaned = join(dir, "cleaned");
    const pidFile = join(dir, "handler.pid");
    // a handler that traps SIGTERM, takes 0.5 s to clean up, and runs as a child of `sh -c`
    // (not exec'd: the `; :` after it keeps even a shell that would exec the last command from doing so)
    const handler = join(dir, "graceful.sh");
    writeFileSync(handler, `#!/bin/sh\necho $$ > '${pidFile}'\ntrap 'sleep 0.5; echo done > "${cleaned}"; exit 1' TERM\nsleep 1000 & wait\n`);
    chmodSync(handler, 0o755);
    const lines: string[] = [];
    const runner = new ExecRunner({ store, command: `'${handler}'; :`, log: createLogger({ write: (l) => lines.push(l) }), timeoutMs: 1000 });
    try {
      store.insertIngress({ topic: "ingress/t", payload: new TextEncoder().encode('{"n":1}'), qos: 1, retain: false, receivedAt: Date.now() });
      runner.wake();
      const until = Date.now() + 10_000;
      while (!lines.some((l) => l.includes("exec.failed")) && Date.now() < until) await Bun.sleep(50);
      expect(lines.find((l) => l.includes("exec.failed"))).toContain("exitCode=124");
      // the cleanup ran (the group used to get SIGKILL the moment the shell died)
      expect(existsSync(cleaned) && readFileSync(cleaned, "utf8")).toBe("done\n");
      expect(running(Number(readFileSync(pidFile, "utf8")))).toBe(false);
      expect(store.listIngress({ state: "unacked" }).length).toBe(1);
    } finally {
      await runner.stop(0);
      store.close();
    }
  }, 20_000);
});

describe("exec.failed says what an exit code means when the code alone does not", () => {
  test("timeout, not executable, not found, killed by a signal; the handler's own codes are its own", () => {
    expect(exitMeaning(124)).toBe("ended at --exec-timeout");
    expect(exitMeaning(126)).toBe("the command is not executable (chmod +x it)");
    expect(exitMeaning(127)).toStartWith("the command was not found");
    expect(exitMeaning(137)).toBe("killed by SIGKILL (out of memory, or another program)");
    expect(exitMeaning(143)).toBe("killed by SIGTERM");
    expect([1, 3, 100].map(exitMeaning)).toStrictEqual([undefined, undefined, undefined]);
  });
});
