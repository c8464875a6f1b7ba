import { ConfigError } from "../../shared/errors.ts";
import { withinDnsLengths } from "../../shared/listen-address.ts";
import { parseUrlStrictly } from "../../shared/strict-url.ts";

/**
 * Where the hub's database is: the SQLite file in the hub home (the default), or a PostgreSQL
 * database named by a URL (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, libpq's URL form;
 * `postgresql://` too). The setting is `hub.database.url` in hub.yml; `hub init --db` and `hub
 * serve --db` (and `$FLASHLEX_HUB_DB`) override it.
 *
 * A password in the URL never leaves this module in text: `display` is the URL without it, and
 * every error names the database by `display`.
 */
export type HubDatabase =
  | { kind: "sqlite"; file: string; display: string }
  | {
      kind: "postgres";
      /** the URL as given, password included: for the driver only, never for a log or an error */
      url: string;
      /** `postgres://USER@HOST:PORT/DATABASE`, without the password */
      display: string;
      /** `HOST:PORT`, for error messages */
      address: string;
    };

const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/**
 * Whether a PostgreSQL URL carries a password, as `USER:PASSWORD@` or as libpq's `?password=`:
 * a file holding it is then the owner's alone (0600).
 */
export function urlHoldsPassword(text: string): boolean {
  try {
    const url = new URL(text);
    return url.password !== "" || [...url.searchParams.keys()].some((key) => key.toLowerCase() === "password");
  } catch {
    return true; // cannot tell where a password would end: treat it as holding one
  }
}

/** The words for the choice, used by `--db`, hub.yml and the docs. */
export const DATABASE_CHOICES = "`sqlite` (hub.db in the hub home) or a PostgreSQL URL postgres://USER:PASSWORD@HOST:PORT/DATABASE";

/**
 * Reads a database setting: `sqlite` (or nothing) for `sqliteFile`, or a PostgreSQL URL.
 * `where` names where the setting came from (`--db`, `hub.database.url in /x/hub.yml`) for the
 * error. Throws ConfigError (78) for anything else: not a URL, another scheme, no host, a port
 * that is not one, no database name. The message never shows the value: a URL that does not
 * parse cannot be trusted to show where its password ends (`postgres://u:p@ss/w0rd@host/db`),
 * so it says what is wrong and where the value came from, nothing more.
 */
export function parseHubDatabase(value: string | undefined, sqliteFile: string, where: string): HubDatabase {
  const text = value?.trim() ?? "";
  if (text === "" || text === "sqlite") return { kind: "sqlite", file: sqliteFile, display: sqliteFile };
  const bad = (why: string) => new ConfigError(`${where}: ${why} (the value is not shown: it may hold a password); give ${DATABASE_CHOICES}`);
  const url = parseUrlStrictly(text);
  if (!url) throw bad("not a URL");
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") throw bad(`unsupported scheme ${url.protocol.replace(/:$/, "")}`);
  if (!url.hostname) throw bad("no host");
  // the display, the address and every refusal name the host: one no resolver takes made them 15,000 characters
  if (!withinDnsLengths(url.hostname)) throw bad("its host is longer than a DNS name may be (253 characters, 63 between dots)");
  const port = url.port === "" ? 5432 : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad("not a port");
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!database || database.includes("/")) throw bad("no database name (the path: postgres://HOST:PORT/DATABASE)");
  // libpq's sslmode values, the ones Bun's client takes: another is refused here, naming the setting
  // (Bun's own refusal came as an internal error, 70)
  const sslmode = url.searchParams.get("sslmode");
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) throw bad(`sslmode must be one of ${SSL_MODES.join(", ")}`);
  const user = url.username ? `${url.username}@` : "";
  // libpq's `?host=/run/postgresql` puts the server on a unix socket in that directory: the
  // errors name the socket, not the URL's (then unused) host
  const socketDir = url.searchParams.get("host");
  const address = socketDir?.startsWith("/") ? `${socketDir.replace(/\/+$/, "")}/.s.PGSQL.${port}` : `${url.hostname}:${port}`;
  return { kind: "postgres", url: text, display: `postgres://${user}${url.hostname}:${port}/${database}${socketDir ? `?host=${socketDir}` : ""}`, address };
}
