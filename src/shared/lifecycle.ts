/**
 * One start/stop lifecycle for the long-running parts of `serve` (src/thing/agent.ts) and of
 * `hub serve` (src/hub/service.ts), after aws-iot-device-client's Feature registry: each part
 * has a name, an optional start and a stop; parts start in the order they are given and stop in
 * the reverse order, so what was started last (what takes work in) stops first, and what
 * everything rests on (the database, the lock) stops last.
 */
export interface Part {
  /** for the log line of a stop that failed */
  readonly name: string;
  /** makes the part work; a part that is ready once made has none */
  start?(): Promise<void> | void;
  stop(): Promise<void> | void;
}

/**
 * The parts of one `serve` or `hub serve`: `start` each in turn, `stop` once at the end. One use
 * only: `stop` runs once, so a part started after it is never stopped.
 */
export class Lifecycle {
  private readonly started: Part[] = [];
  private stopping: Promise<void> | undefined;

  /** `onStopFailed` hears of each part whose stop threw; the other parts still stop. */
  constructor(private readonly onStopFailed: (part: string, err: unknown) => void) {}

  /**
   * Starts `part` and remembers it for `stop`. When its start throws, it is not remembered (a
   * part cleans up its own failed start) and the error comes back to the caller, who stops
   * the parts started before.
   */
  async start<T extends Part>(part: T): Promise<T> {
    await part.start?.();
    this.started.push(part);
    return part;
  }

  /** Stops every started part, the last started first. Safe to call twice: the second call waits for the first. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const part of this.started.splice(0).reverse()) {
        try {
          await part.stop();
        } catch (err) {
          this.onStopFailed(part.name, err);
        }
      }
    })();
    return this.stopping;
  }
}
