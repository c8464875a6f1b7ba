import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Logger } from "../../shared/log.ts";
import type { IngressMessage, MessageStore } from "../store/message-store.ts";

/** After SIGTERM to a run's process group, how long before SIGKILL. */
const KILL_GRACE_MS = 2000;
/** A run's exit code when it was killed at its timeout (as timeout(1) has it). */
const TIMED_OUT = 124;

/**
 * The process groups of the runs in flight, ended when serve's process exits by any way short
 * of SIGKILL (the second signal's "exit now", an error): a run must never outlive serve, or the
 * next serve would hand the same message to a second run while the first still works on it.
 */
const liveGroups = new Set<number>();
let exitHooked = false;

function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (exitHooked) return;
  exitHooked = true;
  process.once("exit", () => {
    for (const group of liveGroups) {
      try {
        process.kill(-group, "SIGKILL");
      } catch {
        // gone already
      }
    }
  });
}

/**
 * `serve --exec CMD`: runs CMD (with /bin/sh) once per unacknowledged ingress message, in
 * arrival order, the payload on stdin and FLASHLEX_MESSAGE_ID / FLASHLEX_TOPIC /
 * FLASHLEX_RECEIVED_AT in the environment. Exit 0 acknowledges the message; anything else leaves
 * it unacknowledged and the same message is tried again after a growing pause, 1 s doubling to
 * 60 s, counted for that message alone (the next message starts again at 1 s). Order is kept, so
 * a message the application keeps refusing holds the queue: the log says so on every try.
 *
 * Each run is bounded: CMD runs in a process group of its own (spawned detached, so it is the
 * leader), and when it has not exited after `timeoutMs` the whole group (CMD and whatever it
 * started) gets SIGTERM, then SIGKILL 2 s later; the run counts as a failure (WARN
 * `exec.timed_out`). Stopping serve gives a run in flight `graceMs` to finish, then ends its
 * group the same way (WARN `exec.killed`), so nothing CMD started is left behind.
 *
 * A message that cannot even be handed to CMD (an exception of ours: a row another program
 * wrote that spawn refuses, a database error while acknowledging) is different: it is logged
 * (ERROR, once per try), held back with its own backoff, and the runner goes on with the next
 * message, so one bad row never stops the others. Held-back messages are remembered in memory
 * only: a restart tries them again first.
 */
export class ExecRunner {
  private running: Promise<void> | undefined;
  /** the run in flight: its process group's leader, and how to end the group */
  private current: { child: ChildProcess; kill: (why: "timeout" | "stop") => void } | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** the message whose runs keep failing, and how many did: the pause grows for it alone */
  private failing: { id: number; failures: number } | undefined;
  private stopped = false;
  /** message id → when (performance.now() ms) to try it again, and how many tries failed */
  private readonly heldBack = new Map<number, { until: number; failures: number }>();
  private readonly timeoutMs: number;

  /** `timeoutMs`: how long one run of CMD may take (serve --exec-timeout) */
  constructor(private readonly deps: { store: MessageStore; command: string; log: Logger; timeoutMs: number }) {
    this.timeoutMs = deps.timeoutMs;
  }

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

  /** Takes no new run; a run in flight gets `graceMs` to finish, then its process group is ended. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const killer = setTimeout(() => this.current?.kill("stop"), graceMs);
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
        if (this.failing?.id === message.id) this.failing = undefined;
        log.info("exec.acked", { id: message.id });
        continue;
      }
      if (this.stopped) return; // ended by stop(): tried again at the next start
      // A message that was acknowledged or deleted meanwhile takes its pause with it.
      const failures = this.failing?.id === message.id ? this.failing.failures + 1 : 1;
      this.failing = { id: message.id, failures };
      const delay = Math.min(60_000, 1000 * 2 ** Math.min(failures - 1, 6));
      log.warn("exec.failed", { id: message.id, exitCode: code, meaning: exitMeaning(code), retryInMs: delay });
      return this.later(delay);
    }
  }

  /**
   * One run of CMD for `message`: resolves to its exit code (128 + the signal's number when a
   * signal ended it, TIMED_OUT when it was killed at its timeout, 127 when it could not start).
   */
  private runOnce(message: IngressMessage): Promise<number> {
    const { log } = this.deps;
    return new Promise((resolve) => {
      const child = spawn("/bin/sh", ["-c", this.deps.command], {
        stdio: ["pipe", "inherit", "inherit"],
        // Its own process group (it is the leader, pgid = its pid): at a timeout or at stop the
        // whole group is ended, not just the shell, so nothing CMD started lives on.
        detached: true,
        env: {
          ...process.env,
          FLASHLEX_MESSAGE_ID: String(message.id),
          FLASHLEX_TOPIC: message.topic,
          FLASHLEX_RECEIVED_AT: String(message.received_at),
        },
      });
      let ended: "timeout" | "stop" | undefined;
      let hardKill: ReturnType<typeof setTimeout> | undefined;
      /** when the group's grace after SIGTERM is over (performance.now() ms) */
      let graceEnds = 0;
      const signalGroup = (signal: NodeJS.Signals) => {
        try {
          if (child.pid) process.kill(-child.pid, signal);
        } catch {
          // the group is gone already
        }
      };
      const kill = (why: "timeout" | "stop") => {
        if (ended) return;
        ended = why;
        const fields = { id: message.id, pid: child.pid, note: "its process group got SIGTERM, then SIGKILL 2 s later if still running" };
        if (why === "timeout")
          log.warn("exec.timed_out", { ...fields, afterSeconds: this.timeoutMs / 1000, hint: "raise serve --exec-timeout if the handler needs longer" });
        else log.warn("exec.killed", { ...fields, reason: "serve is stopping; the message stays unacknowledged and runs again at the next start" });
        signalGroup("SIGTERM");
        graceEnds = performance.now() + KILL_GRACE_MS;
        hardKill = setTimeout(() => signalGroup("SIGKILL"), KILL_GRACE_MS);
      };
      const timer = setTimeout(() => kill("timeout"), this.timeoutMs);
      this.current = { child, kill };
      if (child.pid) trackGroup(child.pid);
      const done = (code: number) => {
        clearTimeout(hardKill);
        if (child.pid) liveGroups.delete(child.pid);
        if (this.current?.child === child) this.current = undefined;
        resolve(ended === "timeout" ? TIMED_OUT : code);
      };
      let finished = false;
      const finish = (code: number) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (!ended || !child.pid) return done(code);
        // The leader is gone, but the SIGTERM went to the whole group: the handler may be a child
        // of the shell (dash does not exec the last command) and still cleaning up. It gets the
        // rest of its grace; whatever is left then (a `cmd &` too) gets SIGKILL.
        void untilGroupGone(child.pid, graceEnds).then(() => {
          signalGroup("SIGKILL");
          done(code);
        });
      };
      child.on("error", (err) => {
        log.error("exec.spawn_failed", { error: err });
        finish(127);
      });
      child.on("close", (code, signal) => finish(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)));
      child.stdin?.on("error", () => {}); // a command that ignores stdin closes it early; that is fine
      child.stdin?.end(typeof message.payload === "string" ? message.payload : Buffer.from(message.payload));
    });
  }
}

/**
 * What a run's exit code says that the code alone does not, for the log (the shell's own line
 * about it, `/bin/sh: 1: ...: Permission denied`, is on serve's stderr without context), or
 * undefined for the handler's own codes (1-123).
 */
export function exitMeaning(code: number): string | undefined {
  if (code === TIMED_OUT) return "ended at --exec-timeout";
  if (code === 126) return "the command is not executable (chmod +x it)";
  if (code === 127) return "the command was not found (a relative path is from serve's working directory, which under systemd is /: give an absolute one)";
  if (code > 128 && code < 160) {
    const name = Object.entries(constants.signals).find(([, n]) => n === code - 128)?.[0];
    return `killed by ${name ?? `signal ${code - 128}`}${name === "SIGKILL" ? " (out of memory, or another program)" : ""}`;
  }
  return undefined;
}

/** Resolves when no process is left in process group `pgid`, or at `deadline` (performance.now() ms), whichever comes first. */
async function untilGroupGone(pgid: number, deadline: number): Promise<void> {
  while (performance.now() < deadline) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return; // ESRCH: the group is empty
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function describe(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}
