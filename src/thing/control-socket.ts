import { existsSync, unlinkSync, chmodSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import { join } from "node:path";
import { ExitCode, FlashlexError } from "../errors.ts";

/**
 * A local HTTP endpoint on a Unix socket in the data directory (owner-only), through which
 * other flashlex commands reach the running `serve`: `collect --via mqtt` hands its message to
 * the one MQTT session instead of opening a second one with the same client id (which would
 * take the session over), and the socket's presence tells a second `serve` to refuse to start.
 */
export const SOCKET_NAME = "flashlex.sock";

export function socketPath(dataDir: string): string {
  return join(dataDir, SOCKET_NAME);
}

export interface ControlHandlers {
  status(): unknown;
  drainOutbox(): void;
}

export async function listenControlSocket(dataDir: string, handlers: ControlHandlers): Promise<Server> {
  const path = socketPath(dataDir);
  if (existsSync(path)) {
    if (await callServe(dataDir, "GET", "/v1/status").catch(() => undefined)) {
      throw new FlashlexError(`${dataDir}: another flashlex serve is running for this data directory`, ExitCode.TEMPFAIL);
    }
    unlinkSync(path); // left behind by a serve that was killed
  }
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method === "GET" && req.url === "/v1/status") return send(200, handlers.status());
    if (req.method === "POST" && req.url === "/v1/outbox/drain") return (handlers.drainOutbox(), send(202, { ok: true }));
    send(404, { error: "no such route" });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

export async function closeControlSocket(server: Server, dataDir: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  try {
    unlinkSync(socketPath(dataDir));
  } catch {
    // already gone
  }
}

/** Calls the running serve; rejects when none answers (no socket, or a stale one). */
export function callServe(dataDir: string, method: "GET" | "POST", path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socketPath(dataDir), method, path, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(body));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("the running serve did not answer")));
    req.on("error", reject);
    req.end();
  });
}
