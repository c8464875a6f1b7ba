import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "../log.ts";
import type { IngressMessage, MessageStore } from "../store/message-store.ts";

/**
 * `serve --exec CMD`: runs CMD (with /bin/sh) once per unacknowledged ingress message, in
 * arrival order, the payload on stdin and FLASHLEX_MESSAGE_ID / FLASHLEX_TOPIC in the
 * environment. Exit 0 acknowledges the message; anything else leaves it unacknowledged and
 * the same message is tried again after a growing pause (order is kept, so a message the
 * application keeps refusing holds the queue: the log says so on every try).
 */
export class ExecRunner {
  private running: Promise<void> | undefined;
  private child: ChildProcess | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private stopped = false;

  constructor(
    private readonly deps: { store: MessageStore; command: string; log: Logger },
  ) {}

  /** Called when a message was stored (and once at start, for what waited). */
  wake(): void {
    if (this.stopped || this.running || this.retryTimer) return;
    this.running = this.runPending().finally(() => (this.running = undefined));
  }

  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const killer = setTimeout(() => this.child?.kill("SIGTERM"), graceMs);
    await this.running;
    clearTimeout(killer);
  }

  private async runPending(): Promise<void> {
    const { store, log } = this.deps;
    while (!this.stopped) {
      const [message] = store.listIngress({ state: "unacked", limit: 1 });
      if (!message) return;
      const code = await this.runOnce(message);
      if (code === 0) {
        store.ackIngress([message.id], Date.now());
        this.failures = 0;
        log.info("exec.acked", { id: message.id });
        continue;
      }
      this.failures++;
      const delay = Math.min(60_000, 1000 * 2 ** Math.min(this.failures - 1, 6));
      log.warn("exec.failed", { id: message.id, exitCode: code, retryInMs: delay });
      this.retryTimer = setTimeout(() => ((this.retryTimer = undefined), this.wake()), delay);
      return;
    }
  }

  private runOnce(message: IngressMessage): Promise<number> {
    return new Promise((resolve) => {
      const child = spawn("/bin/sh", ["-c", this.deps.command], {
        stdio: ["pipe", "inherit", "inherit"],
        env: {
          ...process.env,
          FLASHLEX_MESSAGE_ID: String(message.id),
          FLASHLEX_TOPIC: message.topic,
          FLASHLEX_RECEIVED_AT: String(message.received_at),
        },
      });
      this.child = child;
      child.on("error", (err) => {
        this.deps.log.error("exec.spawn_failed", { error: err });
        resolve(127);
      });
      child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
      child.stdin?.on("error", () => {}); // a command that ignores stdin closes it early; that is fine
      child.stdin?.end(typeof message.payload === "string" ? message.payload : Buffer.from(message.payload));
    });
  }
}
