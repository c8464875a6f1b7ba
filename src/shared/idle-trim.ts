/**
 * Gives memory back after a burst of work. While messages stream in, JavaScriptCore lets its
 * heap grow, and its own scavenger returns the pages only about 15 s after the burst: a `serve`
 * that had just stored 300,000 messages still held 125 MiB 5 s later (75 MiB idle before). One
 * full collection once the work has stopped for a moment brings it to 89 MiB at once
 * (bench/rows/rss.ts measures it). `Bun.gc(true)` also has mimalloc, which holds the memory that
 * is not JavaScript's, return what it freed. `Bun.shrink()` then has JavaScriptCore drop its
 * compiled code and the heap it no longer needs when it is next idle: 200,000 messages left
 * serve's own memory at 19.8-21.4 MiB 5 s after the last one with the collection alone, and
 * 14.1-17.1 with both (13-14 after 20 s, as idle); the next burst compiles its hot path again,
 * as a fresh start does. Bun marks `shrink` deprecated without a replacement: it is called only
 * when it is there.
 *
 * Node (the linux-armv7 build) has no collection to call without --expose-gc: there only
 * `release` runs.
 */
export class IdleTrim {
  readonly #quietMs: number;
  readonly #release: (() => void) | undefined;
  readonly #collect: (() => void) | undefined;
  #lastWorkAt = 0;
  #owed = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * `quietMs`: how long without work (milliseconds) before the trim runs; `release`: what else
   * to give back first (a database's page cache); `collect`: the collection (default: Bun's full
   * GC, none on Node).
   */
  constructor(options: { quietMs?: number; release?: () => void; collect?: () => void } = {}) {
    this.#quietMs = options.quietMs ?? 1000;
    this.#release = options.release;
    this.#collect = "collect" in options ? options.collect : defaultCollect();
  }

  /** Some work was done (a batch stored): one collection is owed once it has been quiet for quietMs. */
  worked(): void {
    this.#lastWorkAt = performance.now();
    this.#owed = true;
  }

  start(): void {
    if ((!this.#collect && !this.#release) || this.#timer) return;
    // Checked on a coarse tick rather than a timer re-armed per message: worked() stays a store.
    this.#timer = setInterval(() => this.#check(), Math.max(this.#quietMs / 2, 10));
    this.#timer.unref?.();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    if (!this.#owed || performance.now() - this.#lastWorkAt < this.#quietMs) return;
    this.#owed = false;
    try {
      this.#release?.();
      this.#collect?.();
    } catch {
      // A trim that fails (the database closing under it) gives back nothing; it is no reason to stop.
    }
  }
}

function defaultCollect(): (() => void) | undefined {
  if (typeof Bun === "undefined") return undefined;
  return () => {
    Bun.gc(true);
    if (typeof Bun.shrink === "function") Bun.shrink();
  };
}
