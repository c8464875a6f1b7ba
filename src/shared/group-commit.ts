/**
 * Group commit: callers that want something made durable at about the same time share one
 * transaction, so N concurrent writes cost one fsync, not N. Each caller's promise settles only
 * after the commit that holds its item: nothing is acknowledged before it is durable.
 *
 * Items submitted while the event loop is busy (the requests read in one turn) are committed
 * together on the next turn (`setImmediate`), or the one after when fewer wait than the last
 * commit held: no timer, and no added wait while the load stays light.
 * A batch holds at most `maxItems` items and `maxBytes` bytes (`bytesOf`); the rest wait for the
 * next one. If the commit throws, every caller in that batch gets the error; the next batch is
 * tried afresh.
 */
export interface GroupCommitOptions<I, O> {
  /** commits `items` in one transaction and gives one result per item, in order */
  commit(items: I[]): Promise<O[]> | O[];
  /** at most this many items in one commit (default 1,000) */
  maxItems?: number;
  /** at most this many bytes in one commit, by `bytesOf` (default 4 MiB); one larger item goes alone */
  maxBytes?: number;
  bytesOf?(item: I): number;
}

interface Waiting<I, O> {
  item: I;
  resolve(result: O): void;
  reject(err: unknown): void;
}

/**
 * A queue for `options.commit`: what was submitted to this instance is committed in batches, one
 * batch at a time (writers share a commit only by sharing the instance). Idle, it holds no timer.
 */
export class GroupCommit<I, O> {
  private queue: Waiting<I, O>[] = [];
  private scheduled = false;
  private committing = false;
  /** how many items the last commit held */
  private lastBatch = 0;
  private readonly maxItems: number;
  private readonly maxBytes: number;

  constructor(private readonly options: GroupCommitOptions<I, O>) {
    this.maxItems = options.maxItems ?? 1000;
    this.maxBytes = options.maxBytes ?? 4 * 1024 * 1024;
  }

  /** Resolves with the item's result once the transaction holding it has committed; rejects with what the commit threw. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.committing || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      // Fewer waiting than the last commit held: its callers, answered at its end, are sending
      // their next items now. One more turn of the event loop lets those arrive and share this
      // commit instead of paying for the next one (the hub's collect at 32 connections: ~8% more
      // requests a second). Never more than one turn, and none while commits hold one item each
      // (the first lone item after a busy spell still gets it: a few µs).
      if (this.queue.length < this.lastBatch) setImmediate(() => this.flushNow());
      else this.flushNow();
    });
  }

  private flushNow(): void {
    this.scheduled = false;
    void this.flush();
  }

  private async flush(): Promise<void> {
    const batch = this.takeBatch();
    this.lastBatch = batch.length;
    this.committing = true;
    try {
      const results = await this.options.commit(batch.map((w) => w.item));
      // One result per item, or none is trusted: a caller must never hear "committed" for an
      // item the commit did not answer for.
      if (results.length !== batch.length) throw new Error(`group commit: ${results.length} results for ${batch.length} items`);
      for (const [i, w] of batch.entries()) w.resolve(results[i]!);
    } catch (err) {
      for (const w of batch) w.reject(err);
    } finally {
      this.committing = false;
      this.schedule();
    }
  }

  private takeBatch(): Waiting<I, O>[] {
    const bytesOf = this.options.bytesOf;
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < this.maxItems) {
      const size = bytesOf ? bytesOf(this.queue[count]!.item) : 0;
      if (count > 0 && bytes + size > this.maxBytes) break;
      bytes += size;
      count++;
    }
    return this.queue.splice(0, count);
  }
}
