import { type ChildProcess, spawn } from "node:child_process";
import type { Logger } from "../../shared/log.ts";
import type { IngressMessage, MessageStore } from "../store/message-store.ts";

/**
 * `serve --exec CMD`: runs CMD (with /bin/sh) once per unacknowledged ingress message, in
 * arrival order, the payload on stdin and FLASHLEX_MESSAGE_ID / FLASHLEX_TOPIC in the
 * environment. Exit 0 acknowledges the message; anything else leaves it unacknowledged and
 * the same message is tried again after a growing pause (order is kept, so a message the
 * application keeps refusing holds the queue: the log says so on every try).
 *
 * A message that cannot even be handed to CMD (an exception of ours: a row another program
 * wrote that spawn refuses, a database error while acknowledging) is different: it is logged
 * (ERROR, once per try), held back with its own backoff, and the runner goes on with the next
 * message, so one bad row never stops the others. Held-back messages are remembered in memory
 * only: a restart tries them again first.
 */
export class ExecRunner {
  private running: Promise<void> | undefined;
  private child: ChildProcess | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private stopped = false;
  /** message id → when (performance.now() ms) to try it again, and how many tries failed */
  private readonly heldBack = new Map<number, { until: number; failures: number }>();

  constructor(private readonly deps: { store: MessageStore; command: string; log: Logger }) {}

  /** Called when a message was stored (and once at start, for what waited). */
  wake(): void {
    if (this.stopped || this.running || this.retryTimer) return;
    this.running = this.runPending()
      .catch((err) => {
        this.deps.log.error("exec.runner_failed", { error: describe(err), note: "tried again in 5 s" });
        this.later(5000);
      })
      .finally(() => (this.running = undefined));
  }

  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const killer = setTimeout(() => this.child?.kill("SIGTERM"), graceMs);
    await this.running;
    clearTimeout(killer);
  }

  private later(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.wake();
    }, delayMs);
  }

  /** The oldest unacknowledged message that is not held back, or the wait until one is. */
  private next(): IngressMessage | { waitMs: number } | undefined {
    const now = performance.now();
    const candidates = this.deps.store.listIngress({ state: "unacked", limit: this.heldBack.size + 1 });
    let waitMs = Infinity;
    for (const message of candidates) {
      const held = this.heldBack.get(message.id);
      if (!held || held.until <= now) return message;
      waitMs = Math.min(waitMs, held.until - now);
    }
    return Number.isFinite(waitMs) ? { waitMs } : undefined;
  }

  private holdBack(message: IngressMessage, event: string, err: unknown): void {
    const failures = (this.heldBack.get(message.id)?.failures ?? 0) + 1;
    const delay = Math.min(60_000, 1000 * 2 ** Math.min(failures - 1, 6));
    this.heldBack.set(message.id, { until: performance.now() + delay, failures });
    this.deps.log.error(event, { id: message.id, error: describe(err), retryInMs: delay, note: "the next messages go on meanwhile" });
  }

  private async runPending(): Promise<void> {
    const { store, log } = this.deps;
    while (!this.stopped) {
      const message = this.next();
      if (!message) return;
      if ("waitMs" in message) return this.later(Math.ceil(message.waitMs));
      let code: number;
      try {
        code = await this.runOnce(message);
      } catch (err) {
        this.holdBack(message, "exec.message_failed", err);
        continue;
      }
      if (code === 0) {
        try {
          store.ackIngress([message.id], Date.now());
        } catch (err) {
          // CMD has handled it; it runs again later (at least once), the others go on.
          this.holdBack(message, "exec.ack_failed", err);
          continue;
        }
        this.heldBack.delete(message.id);
        this.failures = 0;
        log.info("exec.acked", { id: message.id });
        continue;
      }
      this.failures++;
      const delay = Math.min(60_000, 1000 * 2 ** Math.min(this.failures - 1, 6));
      log.warn("exec.failed", { id: message.id, exitCode: code, retryInMs: delay });
      return this.later(delay);
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

function describe(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}
