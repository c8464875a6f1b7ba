/**
 * Spots a client id clash from the client's side: two processes connecting under one client id
 * take the session from each other (MQTT 3.1.1 §3.1.4: the server disconnects the existing
 * client), each reconnecting a moment later, for ever. Each side only sees its connection close
 * soon after it opened. Several such short connections in a row, with no long one between, are
 * reported once per episode (a connection that lasts ends the episode).
 *
 * A broker that keeps dropping clients for another reason looks the same; the report says
 * "probably".
 */
export class TakeoverDetector {
  private openedAt: number | undefined;
  private short = 0;
  private reported = false;

  /**
   * @param shortMs a connection closed within this many ms of its CONNACK counts as taken over; default 10 s
   * @param times this many short connections in a row make a clash; default 3
   */
  constructor(
    private readonly shortMs = 10_000,
    private readonly times = 3,
  ) {}

  /** A connection was accepted at `now` (ms). */
  connected(now: number): void {
    this.openedAt = now;
  }

  /**
   * The connection closed at `now` (ms). True once per episode: when this close makes `times`
   * short connections in a row. A close with no connection open (a refused attempt) is ignored.
   */
  closed(now: number): boolean {
    if (this.openedAt === undefined) return false;
    const lasted = now - this.openedAt;
    this.openedAt = undefined;
    if (lasted >= this.shortMs) {
      this.short = 0;
      this.reported = false;
      return false;
    }
    this.short++;
    if (this.short < this.times || this.reported) return false;
    this.reported = true;
    return true;
  }
}
