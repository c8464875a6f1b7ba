/**
 * The caller's end of serve's control socket (server.ts): a ThingAccess whose every call goes
 * to the running serve, answered the same way as in process.
 */
import { existsSync } from "node:fs";
import { request } from "node:http";
import { FlashlexError, isErrorKind } from "../../shared/errors.ts";
import type { ThingAccess } from "./access.ts";
import { type Answer, fromWire, fromWireOutbox, ROUTES, socketPath, type WireMessage, type WireOutboxEntry } from "./wire.ts";

/** True when a serve answers on `dataDir`'s socket (a socket file alone may be a dead serve's). */
export function serveIsRunning(dataDir: string): Promise<boolean> {
  if (!existsSync(socketPath(dataDir))) return Promise.resolve(false);
  return callServe(dataDir, ROUTES.status).then(
    () => true,
    () => false,
  );
}

/**
 * Calls the running serve on `route` (wire.ts ROUTES) and returns its parsed answer; rejects
 * when none answers (no socket, or a stale one). Long requests (a collect waiting for its API)
 * are bounded by serve's own timeouts.
 */
export function callServe(dataDir: string, route: string, body?: unknown): Promise<Answer> {
  const [method, path] = route.split(" ") as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socketPath(dataDir), method, path, headers: { "Content-Type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.setTimeout(method === "GET" ? 2000 : 120_000, () => req.destroy(new Error("the running serve did not answer")));
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The thing's data through the serve that runs on `dataDir`. A refusal comes back with serve's kind. */
export function serveAccess(dataDir: string): ThingAccess {
  const call = async <T>(route: string, body?: unknown): Promise<T> => {
    const answer = await callServe(dataDir, route, body);
    if (!answer.ok) throw new FlashlexError(answer.error ?? "the running serve refused the request", isErrorKind(answer.kind) ? answer.kind : "bug");
    return answer.result as T;
  };
  return {
    via: "serve",
    listMessages: async (query) => (await call<WireMessage[]>(ROUTES.listMessages, query)).map(fromWire),
    ackMessages: (ids) => call(ROUTES.ackMessages, { ids }),
    deleteMessages: (ids) => call(ROUTES.deleteMessages, { ids }),
    collect: (body, via) => call(ROUTES.collect, { body, via }),
    listOutbox: async (state) => (await call<WireOutboxEntry[]>(ROUTES.listOutbox, { state })).map(fromWireOutbox),
    retryOutbox: (ids) => call(ROUTES.retryOutbox, { ids }),
    dropOutbox: (ids) => call(ROUTES.dropOutbox, { ids }),
    close: () => {},
  };
}
