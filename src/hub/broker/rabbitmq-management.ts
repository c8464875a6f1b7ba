/**
 * Closing revoked things' connections on a RabbitMQ cluster through its management API
 * (rabbitmq_management 3.10: `DELETE /api/connections/username/{user}` closes every connection
 * of that user, on any node of the cluster). The auth backend refuses them from then on
 * (broker-auth.ts reads the hub database), so a closed thing cannot come back.
 *
 * The hub logs in as `flashlex-hub` with the broker secret, which RabbitMQ passes to the hub's
 * own auth listener to check (decideUser): no user is kept in RabbitMQ. HTTPS, verified
 * against the hub CA (the nodes serve the broker certificate).
 */
import { FlashlexError } from "../../shared/errors.ts";
import { HUB_CLIENT_NAME } from "../home/paths.ts";

export interface RabbitManagementOptions {
  /** https://HOST:PORT of each node's management listener; tried in turn */
  urls: string[];
  caPem: string;
  secret: string;
  /** per request; default 5000 ms */
  timeoutMs?: number;
}

/**
 * Returns `closeConnections(names)`: closes every connection of each named thing. Throws
 * FlashlexError (`unavailable`) when no node answered for some name; the revocation enforcer
 * retries (revocation-enforcer.ts).
 */
export function rabbitConnectionCloser(opts: RabbitManagementOptions): (thingNames: readonly string[]) => Promise<void> {
  const authorization = `Basic ${Buffer.from(`${HUB_CLIENT_NAME}:${opts.secret}`).toString("base64")}`;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const closeOne = async (name: string) => {
    const failures: string[] = [];
    for (const base of opts.urls) {
      try {
        const response = await fetch(`${base.replace(/\/+$/, "")}/api/connections/username/${encodeURIComponent(name)}`, {
          method: "DELETE",
          headers: { authorization },
          tls: { ca: opts.caPem },
          signal: AbortSignal.timeout(timeoutMs),
        });
        await response.arrayBuffer();
        // 204 closed (or none was open).
        if (response.ok) return;
        failures.push(`${base}: HTTP ${response.status}`);
      } catch (err) {
        failures.push(`${base}: ${(err as Error).message}`);
      }
    }
    throw new FlashlexError(`no RabbitMQ management API closed ${name}'s connections (${failures.join("; ")})`, "unavailable");
  };
  return async (thingNames) => {
    for (const name of thingNames) await closeOne(name);
  };
}
