/**
 * The ports `hub serve` listens on itself, checked against one another before any is taken: two
 * of them on one port (hub.yml's `broker.port` edited to the API's) failed as "the address is
 * already in use; stop what listens there", which sent the operator looking for another program
 * when the hub itself held it, and `ss` showed nothing once it had exited.
 */
import { isIP } from "node:net";
import { ConfigError } from "../shared/errors.ts";
import { formatListenAddress } from "../shared/listen-address.ts";

/** One listener of the hub: what it is, where, and the hub.yml settings that say so. */
export interface OwnListener {
  what: string;
  host: string;
  /** 0: a free port the system picks (tests), never a clash */
  port: number;
  settings: string;
}

/**
 * Throws ConfigError (78) naming both listeners' settings and `configFile` when two of `listeners`
 * would take the same port on addresses that overlap: the same one, either a wildcard (0.0.0.0,
 * ::), or both loopback.
 */
export function refuseSharedPorts(listeners: readonly OwnListener[], configFile: string): void {
  listeners.forEach((a, i) => {
    const b = listeners.slice(i + 1).find((other) => other.port === a.port && a.port !== 0 && overlap(a.host, other.host));
    if (b) {
      throw new ConfigError(
        `${a.what} (${a.settings}) and ${b.what} (${b.settings}) in ${configFile} would both listen on ${formatListenAddress(a)}${a.host === b.host ? "" : ` and ${formatListenAddress(b)}`}: the hub opens each itself; give each its own port`,
      );
    }
  });
}

function overlap(a: string, b: string): boolean {
  const [x, y] = [a.toLowerCase(), b.toLowerCase()];
  return x === y || wildcard(x) || wildcard(y) || (loopback(x) && loopback(y));
}

function wildcard(host: string): boolean {
  return host === "" || host === "0.0.0.0" || host === "::" || host === "[::]";
}

function loopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || (isIP(host) === 4 && host.startsWith("127."));
}
