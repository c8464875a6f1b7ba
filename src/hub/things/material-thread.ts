/**
 * Makes a new thing's key, certificate and distribution (thing-material.ts) on a worker thread,
 * so the hub's event loop keeps answering API requests and broker packets meanwhile: on the main
 * thread the certificate and the zip held it some 10 ms per thing, and the zip's fsync up to 9 ms
 * more on a busy disk (bench row 7).
 *
 * The worker is this same program (the compiled binary, or src/main.ts from source) started as a
 * Web Worker: main.ts calls answerMaterialJobs() when it is not the main thread. One worker
 * serves every job in turn; it starts with the first job and ends after IDLE_MS without one, so
 * an idle hub does not keep its memory.
 */
import { type ErrorKind, FlashlexError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { TARGET } from "../../shared/version.ts";
import type { MaterialJob, ThingMaterial } from "./thing-material.ts";

/**
 * True on the worker thread this module starts. Bun's own flag, not node:worker_threads: loading
 * that module costs every command ~4 ms of start (bench row 6). Under Node (the armv7 build,
 * which has no hub) nothing starts the worker, so it is always false there.
 */
export function isMaterialWorker(): boolean {
  return typeof Bun !== "undefined" && !Bun.isMainThread;
}

/** How long the worker stays after its last job, ms. */
const IDLE_MS = 30_000;

interface JobMessage {
  id: number;
  job: MaterialJob;
}

type ReplyMessage = { id: number; material: ThingMaterial } | { id: number; error: { message: string; kind: ErrorKind; clientSafe: boolean } };

/** The worker's global scope, as far as it is used here. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<JobMessage>) => void) | null;
  postMessage(message: ReplyMessage): void;
}

interface Waiting {
  resolve: (material: ThingMaterial) => void;
  reject: (err: Error) => void;
}

let worker: Worker | undefined;
let idleTimer: ReturnType<typeof setTimeout> | undefined;
let lastId = 0;
const waiting = new Map<number, Waiting>();

/**
 * makeThingMaterial(job) on the worker thread. Rejects with what it throws there, as a
 * FlashlexError of the same kind, message and clientSafe (ConfigError, CryptoError, and a file
 * system's error classified there: their kinds decide the exit code and the HTTP status), or with
 * an Error when the worker itself failed.
 */
export function makeThingMaterialOffThread(job: MaterialJob): Promise<ThingMaterial> {
  worker ??= startWorker();
  const thread = worker;
  clearTimeout(idleTimer);
  // while a job waits the worker keeps the process alive (a `hub thing create` has nothing else)
  thread.ref();
  const id = ++lastId;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    thread.postMessage({ id, job } satisfies JobMessage);
  });
}

function startWorker(): Worker {
  let thread: Worker;
  try {
    thread = new Worker(programUrl());
  } catch (err) {
    // a limit on threads or memory (ulimit -u, a cgroup): it may pass once other work ends
    throw new FlashlexError(`could not start a thread to make the thing's key and distribution (${(err as Error).message}); try again later`, "try-later", {
      cause: err,
      clientSafe: true,
    });
  }
  thread.onmessage = (event: MessageEvent<ReplyMessage>) => {
    const reply = event.data;
    const job = waiting.get(reply.id);
    waiting.delete(reply.id);
    if ("material" in reply) job?.resolve(reply.material);
    else job?.reject(new FlashlexError(reply.error.message, reply.error.kind, { clientSafe: reply.error.clientSafe }));
    if (waiting.size) return;
    thread.unref();
    idleTimer = setTimeout(() => stopWorker(thread), IDLE_MS);
    idleTimer.unref?.();
  };
  thread.onerror = (event: ErrorEvent) => {
    const failure = new Error(`the thread that makes thing keys and distributions failed: ${event.message}`);
    for (const job of waiting.values()) job.reject(failure);
    waiting.clear();
    stopWorker(thread);
  };
  return thread;
}

function stopWorker(thread: Worker): void {
  if (worker === thread) worker = undefined;
  thread.terminate();
}

/** This program's entry module: the compiled binary (it has a TARGET), or src/main.ts when run from source. */
function programUrl(): string {
  return TARGET ? Bun.main : new URL("../../main.ts", import.meta.url).href;
}

/**
 * In a worker thread started by makeThingMaterialOffThread: answers its jobs until it is
 * terminated. main.ts calls it when this program runs as a worker; it returns at once (the
 * handler is set before the first message can arrive). Does nothing on the main thread.
 */
export function answerMaterialJobs(): void {
  if (!isMaterialWorker()) return;
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = async (event) => {
    const { id, job } = event.data;
    try {
      const { makeThingMaterial } = await import("./thing-material.ts");
      const material = await makeThingMaterial(job);
      scope.postMessage({ id, material });
    } catch (err) {
      // classified here: an errno error's code does not survive the structured clone
      const { message, kind, clientSafe } = toFlashlexError(err);
      scope.postMessage({ id, error: { message, kind, clientSafe } });
    }
  };
}
