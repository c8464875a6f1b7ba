/**
 * The console's live view: server-sent events from the hub's MessageFeed (src/hub/messages/feed.ts),
 * for one thing or for all. Events:
 *
 *   message    {kind: "collected" | "sent", message: MessageView}  a message stored just now
 *   delivered  {id, deliveredAt}                                    the thing acknowledged one
 *   presence   {connected, words}                                   the thing (dis)connected
 *
 * The data is JSON; the page's script puts every string into the page as text, never as HTML.
 * A comment line every few seconds keeps the connection open through Bun's idle timeout and
 * proxies, and notices a browser that has gone. A stream lives no longer than what let it open:
 * its session's sign-out ends it at once (`endSession`), and every RECHECK_MS it asks whether its
 * session is still live (a rotation by another process or hub, an expiry) and its thing still
 * there, and ends when not. `close()` ends every stream (hub stopping, a rotation here). A
 * reader that leaves more than MAX_UNREAD_BYTES unread has its stream ended.
 */
import type { MessageFeed } from "../messages/feed.ts";
import type { ThingRecord } from "../store/hub-store.ts";
import type { Things } from "../things/things.ts";
import { presenceWords } from "./pages/send.ts";
import { isoUtc, messageView } from "./views.ts";

/** How often a stream says something (ms): under Bun.serve's 10 s idle timeout. */
export const HEARTBEAT_MS = 4000;
/** How often a stream asks whether it may go on (ms): the longest it outlives a session ended elsewhere. */
export const RECHECK_MS = 12_000;

/** The most live views open at once; more are refused (each is an open HTTP response). */
export const MAX_LIVE_VIEWS = 200;

/**
 * The most a stream holds for a reader that does not keep up, in bytes: past it the stream ends,
 * and the browser's EventSource opens it again after its `retry` (the page then shows what
 * comes next). Unbounded, ten views that stopped reading held 1 GB of a burst of 20,000 messages.
 */
export const MAX_UNREAD_BYTES = 256 * 1024;

/** Who a stream is for, and how it learns that it must end. */
export interface LiveViewer {
  /** the console session that opened it: `endSession` of this id ends it */
  sessionId: string;
  /** false when the session is no longer live or the thing is gone; asked every RECHECK_MS (a rejection ends the stream too) */
  stillAllowed(): Promise<boolean>;
}

export interface LiveStreams {
  /** the event stream for `thing` (every thing when absent) to `viewer`; undefined when too many are open */
  open(thing: ThingRecord | undefined, signal: AbortSignal, viewer: LiveViewer): ReadableStream<Uint8Array> | undefined;
  /** ends the streams of one session (its sign-out) */
  endSession(sessionId: string): void;
  /** ends every open stream */
  close(): void;
}

/**
 * The streams above, fed by `deps.feed`; `heartbeatMs` and `recheckMs` (ms) default to HEARTBEAT_MS
 * and RECHECK_MS. At most MAX_LIVE_VIEWS are open at once (the feed's other watchers, the
 * metrics, do not count).
 */
export function liveStreams(deps: { feed: MessageFeed; things: Things; heartbeatMs?: number; recheckMs?: number }): LiveStreams {
  /** each open stream's end, with the session it belongs to */
  const open = new Map<() => void, string>();
  const encoder = new TextEncoder();

  return {
    open(thing, signal, viewer) {
      if (open.size >= MAX_LIVE_VIEWS) return undefined;
      let end: () => void = () => {};
      let stopWatching: (() => void) | undefined;
      const stream = new ReadableStream<Uint8Array>(
        {
          start(controller) {
            let ended = false;
            const send = (text: string) => {
              if (ended) return;
              try {
                controller.enqueue(encoder.encode(text));
              } catch {
                end();
                return;
              }
              // what the reader has not taken, past the bound: a view that stopped reading
              if ((controller.desiredSize ?? 0) < 0) end();
            };
            const event = (name: string, data: unknown) => send(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
            let connected = thing ? deps.things.isConnected(thing) : null;
            const presence = () => event("presence", { connected, words: presenceWords(connected) });
            stopWatching = deps.feed.watch((e) => {
              // by id: a thing deleted and made again under its name is another thing
              if (thing && (e.type === "delivered" ? e.thingName !== thing.name : e.thingId !== thing.id)) return;
              if (e.type === "delivered") event("delivered", { id: e.flmessagespk, deliveredAt: isoUtc(e.at) });
              else event("message", { kind: e.type, message: messageView(e.message, e.thingName) });
            });
            let lastCheck = Date.now();
            const timer = setInterval(() => {
              if (Date.now() - lastCheck >= (deps.recheckMs ?? RECHECK_MS)) {
                lastCheck = Date.now();
                viewer.stillAllowed().then(
                  (allowed) => allowed || end(),
                  () => end(),
                );
              }
              if (thing) {
                const now = deps.things.isConnected(thing);
                if (now !== connected) {
                  connected = now;
                  presence();
                  return;
                }
              }
              send(": ping\n\n");
            }, deps.heartbeatMs ?? HEARTBEAT_MS);
            end = () => {
              if (ended) return;
              ended = true;
              clearInterval(timer);
              stopWatching?.();
              open.delete(end);
              signal.removeEventListener("abort", end);
              try {
                controller.close();
              } catch {
                // already closed by the reader
              }
            };
            open.set(end, viewer.sessionId);
            signal.addEventListener("abort", end);
            // Ask the browser to wait 3 s before reconnecting; say where the thing stands now.
            send("retry: 3000\n\n");
            if (thing) presence();
          },
          cancel() {
            end();
          },
        },
        { highWaterMark: MAX_UNREAD_BYTES, size: (chunk) => chunk?.byteLength ?? 0 },
      );
      return stream;
    },
    endSession(sessionId) {
      for (const [end, id] of [...open]) if (id === sessionId) end();
    },
    close() {
      for (const end of [...open.keys()]) end();
    },
  };
}
