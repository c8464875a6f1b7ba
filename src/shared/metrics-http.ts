/**
 * The small HTTP listener that serves a Prometheus scrape: `GET /metrics` and nothing else, on
 * its own address (the hub's `hub.metrics.listen`, the agent's `serve --metrics`), apart from
 * any API so that what it exposes is decided by where it binds (loopback by default), not by a
 * token (docs/metrics.md says why). node:http, so it runs under Bun and under the armv7 Node build.
 */
import type { Server } from "node:http";
import { formatListenAddress, type ListenAddress } from "./listen-address.ts";

/** One scrape's answer: the exposition text and its Content-Type (prom-client's registry gives both). */
export interface Exposition {
  contentType: string;
  body: string;
}

export interface MetricsListener {
  /** `http://HOST:PORT/metrics`, with the port the OS gave for port 0 */
  url: string;
  close(): Promise<void>;
}

/**
 * Listens on `at` and answers `GET /metrics` (and HEAD) with `render()`; any other path is 404,
 * any other method 405. A render that throws answers 500 with one line (no stack) and calls
 * `onError`. Rejects with the listen error (EADDRINUSE, EADDRNOTAVAIL, EACCES) untouched, so the
 * caller names its own setting.
 */
export async function startMetricsListener(at: ListenAddress, render: () => Promise<Exposition>, onError?: (err: unknown) => void): Promise<MetricsListener> {
  const { createServer } = await import("node:http");
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path !== "/metrics") {
      response.writeHead(404, { "Content-Type": "text/plain" }).end("not found: scrape /metrics\n");
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" }).end("only GET\n");
      return;
    }
    render().then(
      (exposition) => {
        response.writeHead(200, { "Content-Type": exposition.contentType, "Cache-Control": "no-store" });
        response.end(request.method === "HEAD" ? undefined : exposition.body);
      },
      (err) => {
        onError?.(err);
        response.writeHead(500, { "Content-Type": "text/plain" }).end("the metrics could not be collected; see the log\n");
      },
    );
  });
  // A scrape is one short request: an idle keep-alive socket must not hold close() up.
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : at.port;
      resolve({
        url: `http://${formatListenAddress({ host: at.host, port })}/metrics`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections?.();
          }),
      });
    });
  });
}
