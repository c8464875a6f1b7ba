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
 * proxies, and notices a browser that has gone. `close()` ends every stream (hub stopping).
 */
import type { MessageFeed } from "../messages/feed.ts";
import type { ThingRecord } from "../store/hub-store.ts";
import type { Things } from "../things/things.ts";
import { presenceWords } from "./pages/send.ts";
import { isoUtc, messageView } from "./views.ts";

/** How often a stream says something (ms): under Bun.serve's 10 s idle timeout. */
export const HEARTBEAT_MS = 4000;

export interface LiveStreams {
  /** the event stream for `thing` (every thing when absent); undefined when too many are open */
  open(thing: ThingRecord | undefined, signal: AbortSignal): ReadableStream<Uint8Array> | undefined;
  /** ends every open stream */
  close(): void;
}

export function liveStreams(deps: { feed: MessageFeed; things: Things; heartbeatMs?: number }): LiveStreams {
  const open = new Set<() => void>();
  const encoder = new TextEncoder();

  return {
    open(thing, signal) {
      let end: () => void = () => {};
      let stopWatching: (() => void) | undefined;
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          let ended = false;
          const send = (text: string) => {
            if (ended) return;
            try {
              controller.enqueue(encoder.encode(text));
            } catch {
              end();
            }
          };
          const event = (name: string, data: unknown) => send(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
          let connected = thing ? deps.things.isConnected(thing) : null;
          const presence = () => event("presence", { connected, words: presenceWords(connected) });
          stopWatching = deps.feed.watch((e) => {
            if (thing && e.thingName !== thing.name) return;
            if (e.type === "delivered") event("delivered", { id: e.flmessagespk, deliveredAt: isoUtc(e.at) });
            else event("message", { kind: e.type, message: messageView(e.message, e.thingName) });
          });
          if (!stopWatching) {
            controller.close();
            return;
          }
          const timer = setInterval(() => {
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
          open.add(end);
          signal.addEventListener("abort", end);
          // Ask the browser to wait 3 s before reconnecting; say where the thing stands now.
          send("retry: 3000\n\n");
          if (thing) presence();
        },
        cancel() {
          end();
        },
      });
      // `start` ran synchronously: no watcher means the feed is full.
      return stopWatching ? stream : undefined;
    },
    close() {
      for (const end of [...open]) end();
    },
  };
}
