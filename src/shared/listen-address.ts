/**
 * Where a small local listener (the metrics endpoints) binds: `HOST:PORT`, `[IPv6]:PORT`, or a
 * bare `PORT`, which means 127.0.0.1 (loopback unless the owner names another address on purpose).
 */
export interface ListenAddress {
  host: string;
  /** 0 asks the OS for a free port (tests) */
  port: number;
}

/**
 * A DNS host name (RFC 1123 labels of 1 to 63 letters, digits and inner dashes; 253 characters at
 * most): the one rule for every host a setting or flag names (listen addresses, hub.yml's broker
 * host, hub init's --name, the broker configs' --bind and --host).
 */
export const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Whether a URL's host (`URL.hostname`) is within DNS's lengths: 253 characters, 63 between dots
 * (RFC 1035 §2.3.4). Looser than DNS_NAME on purpose: `_` passes, as Docker's service names
 * have it; a host no resolver takes (5,000 characters) does not.
 */
export function withinDnsLengths(hostname: string): boolean {
  return hostname.length <= 253 && hostname.split(".").every((label) => label.length <= 63);
}

/** The host a bare port binds to. */
export const LOOPBACK = "127.0.0.1";

/**
 * Parses `text` as a listen address. Returns undefined when it is not one (the caller's error
 * names the flag or key); hosts are IP addresses or DNS names (`localhost`), ports 0-65535.
 */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const value = text.trim();
  if (/^\d{1,5}$/.test(value)) return portOf(LOOPBACK, value);
  const bracketed = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(value);
  if (bracketed) return isIPv6(bracketed[1]!) ? portOf(bracketed[1]!, bracketed[2]!) : undefined;
  const plain = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!plain) return undefined;
  const host = plain[1]!;
  // A dotted IPv4 address is also a well-formed DNS name here; a bad one fails at bind, naming the address.
  if (!DNS_NAME.test(host)) return undefined;
  return portOf(host, plain[2]!);
}

/** Whether `text` is an IPv4 address in dotted decimal (each part 0-255) or an IPv6 address. */
function isIpAddress(text: string): boolean {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  return v4 ? v4.slice(1).every((part) => Number(part) <= 255) : isIPv6(text);
}

/**
 * Whether `text` is an IPv6 address, by the WHATWG URL parser (node:net's isIP would load
 * node:net when the config is read, which every command does: test/unit/start-up.test.ts).
 */
function isIPv6(text: string): boolean {
  return URL.canParse(`http://[${text}]/`);
}

function portOf(host: string, port: string): ListenAddress | undefined {
  const n = Number(port);
  return n <= 65535 ? { host, port: n } : undefined;
}

/** `host:port` as a URL authority (IPv6 in brackets). */
export function formatListenAddress(at: ListenAddress): string {
  return `${at.host.includes(":") && !at.host.startsWith("[") ? `[${at.host}]` : at.host}:${at.port}`;
}

/**
 * Why a listen on `at` failed, as one phrase an operator can act on, or undefined when `err` is
 * not a failure to listen (the caller passes it on). Bun and node:net say "this address cannot
 * be had" in several ways: EADDRINUSE, EADDRNOTAVAIL, EACCES (a port below 1024), EINVAL (an
 * address of no interface, a link-local one without its zone), ENOTFOUND or EAI_* from name
 * resolution, or an Error "Failed to listen at HOST" with no code at all. A host *name* that
 * does not resolve comes back from Bun's node:http and Bun.serve with whatever errno was left
 * over (EINVAL, ENOENT, EISDIR seen, by what else the process had done): for a name, any such
 * code is read as the name not resolving.
 */
export function listenFailure(err: unknown, at: ListenAddress): string | undefined {
  const e = err as { code?: unknown; message?: unknown; syscall?: unknown; path?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : undefined;
  switch (code) {
    case "EADDRINUSE":
      return "the address is already in use (EADDRINUSE); stop what listens there (ss -ltnp) or choose another port";
    case "EACCES":
      return "permission denied (EACCES); ports below 1024 need root or CAP_NET_BIND_SERVICE";
    case "EADDRNOTAVAIL":
      return "the address is not available on this machine (EADDRNOTAVAIL)";
  }
  const ip = isIpAddress(at.host);
  // EINVAL for an IP address: one no interface has (a link-local one without its zone)
  if (code === "EINVAL" && ip) return "not an address this machine can listen on (EINVAL)";
  const unnamed = code === undefined && typeof e?.message === "string" && e.message.startsWith("Failed to listen at");
  const unresolved = code === "ENOTFOUND" || code?.startsWith("EAI_") || (!ip && code !== undefined && /^E[A-Z]+$/.test(code) && e?.path === undefined);
  if (!unnamed && !unresolved) return undefined;
  if (at.host.startsWith("[")) return "write an IPv6 address here without brackets (::1, not [::1])";
  return `${at.host} is neither an address of this machine nor a name that resolves to one${code ? ` (${code})` : ""}`;
}
