import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { SQL } from "bun";
import { ConfigError, type ErrorKind, FlashlexError, oneLine } from "../../shared/errors.ts";
import { newerSchema } from "../../shared/newer-schema.ts";
import type { HubDatabase } from "./database-url.ts";
import { HUB_MIGRATIONS, HUB_READABLE_FROM, type Migration } from "./migrations.ts";
import { type HubOpenOptions, type HubSql, type HubSqlValue, narrowRow } from "./sql.ts";

/**
 * The PostgreSQL driver of the hub store, on Bun's built-in client (`import { SQL } from "bun"`:
 * no npm dependency, and it works in the compiled binary). A pool of connections; every
 * statement is a parameterised query (`?` becomes `$1`, `$2`, ...). `bigint: true` makes every
 * BIGINT a bigint, which `narrowRow` turns into an exact number (without it Bun answers strings).
 *
 * Migrations (migrations.ts) run when the store opens, in one transaction under an advisory
 * lock, so hubs starting together against one database migrate it once; the version is the
 * highest row of `schema_version`. PostgreSQL's DDL is transactional: a step half done rolls back.
 *
 * Failures to reach or log in to the server become FlashlexError `unavailable` (exit 69, HTTP
 * 503) naming HOST:PORT and the database without its password; nothing here puts the URL in a
 * message.
 */

/**
 * How long one store call (a statement, a transaction, opening and migrating) may take before
 * the hub gives up on it, in milliseconds: a server that stopped answering (frozen, a network
 * that drops packets) then fails as `unavailable` (HTTP 503, exit 69, a WARN in serve) instead of
 * holding the caller until Bun.serve's idle timeout. The statement itself is left to the pool:
 * Bun's SQL has no cancel, and a frozen server would not hear one.
 */
export const STORE_DEADLINE_MS = 10_000;

/** How long closing the pool waits for the statements still running, in seconds; they are then cut off. */
const CLOSE_WAIT_SECONDS = 2;

/** The advisory lock key hubs take while they migrate ("flashlex" in ASCII, as a bigint). */
const MIGRATION_LOCK = 0x666c6173686c6578n;

/** Server error codes (SQLSTATE) that mean "cannot use this server now", not "bad statement". */
const UNAVAILABLE_SQLSTATE = /^(08|28|3D|53|57P)/;

/** insufficient_privilege (42501) and the other "not allowed" codes of class 42 and 2F/38 */
const INSUFFICIENT_PRIVILEGE_SQLSTATE = /^(42501|2F004|38004|0LP01)$/;

/**
 * The server's own refusals that no statement of the hub's can cause by being wrong, by SQLSTATE
 * (PostgreSQL's Appendix A, "Error Codes"), with the kind each is reported as and what it means.
 * Before, they passed through as unknown errors and the hub reported them as its own bug (70 / 500).
 * Class 22 (data exception), 23505 (a unique violation: callers judge it, hub-store.ts
 * isThingNameTaken) and the rest of class 42 (syntax, access rules) still pass through: there the
 * hub's own statement would be at fault. An error raised inside a routine (a trigger or function,
 * which the hub's schema has none of) is the database's own refusal whatever its code (`where`
 * names the routine).
 */
const SERVER_REFUSALS: readonly { sqlstate: RegExp; kind: ErrorKind; what: string }[] = [
  { sqlstate: /^25006$/, kind: "read-only", what: "the database is read-only (a standby, or default_transaction_read_only)" },
  { sqlstate: /^53100$/, kind: "full", what: "the database server's disk is full" },
  {
    sqlstate: /^(40|55P03$|57014$|72000$|25P03$)/,
    kind: "try-later",
    what: "the server gave up on the statement (a deadlock, a serialization failure, a lock, statement or idle timeout), which may pass when tried again",
  },
  { sqlstate: /^XX00[12]$/, kind: "damaged", what: "the server found its data damaged" },
  { sqlstate: /^(58|XX|F0)/, kind: "io", what: "the server failed" },
  // a constraint the database's administrator added (the hub's own rows keep the hub's)
  { sqlstate: /^23(502|503|514|P01)$/, kind: "io", what: "the database refused the row (a constraint in it)" },
  // a table or column gone: the schema was changed by hand after the hub made it
  { sqlstate: /^42(P01|703)$/, kind: "config", what: "the database is not as the hub made it (a table or column is missing: changed by hand?)" },
  // A trigger, rule or routine the database's administrator added refused the statement.
  { sqlstate: /^(P0|09|27|38|39)/, kind: "io", what: "the database refused the statement (a trigger, rule or routine in it)" },
];

interface PostgresErrorLike {
  code?: unknown;
  errno?: unknown;
  message?: unknown;
  /** where in the server it was raised: a routine ("PL/pgSQL function refuse() line 1 at RAISE"), a bound parameter, ... */
  where?: unknown;
}

/**
 * Opens the hub database at `db` (a PostgreSQL URL), migrates it, and gives the HubSql seam over
 * it. With `create` (`hub init`) the database must hold no hub yet: a second hub in one database
 * would mix two CAs' things (ConfigError). Throws FlashlexError `unavailable` (69) when the
 * server cannot be reached or refuses the login, ConfigError (78) for a database that is not a
 * FlashLex hub's, or has a newer schema than this binary knows.
 */
export async function openPostgresHubSql(db: Extract<HubDatabase, { kind: "postgres" }>, options: HubOpenOptions = {}): Promise<HubSql> {
  const client = new SQL(db.url, {
    bigint: true,
    max: 10,
    // seconds: an unreachable host fails in this time, not in the kernel's minutes
    connectionTimeout: 10,
    idleTimeout: 60,
  });
  const fail = (err: unknown) => postgresError(err, db);
  try {
    const from = await withDeadline(migratePostgres(client, HUB_MIGRATIONS, HUB_READABLE_FROM, db, options.create ?? false), db, "opening the database");
    if (from !== undefined && from >= 1) options.migrated?.(from, HUB_MIGRATIONS.length);
  } catch (err) {
    client.close({ timeout: 0 }).catch(() => {});
    throw await explained(fail(err), db);
  }
  return postgresHubSql(client, fail, db);
}

/**
 * `work`, or FlashlexError `unavailable` when it has not settled within STORE_DEADLINE_MS.
 * `what` says what was being done, for the message.
 */
export async function withDeadline<T>(work: Promise<T>, db: Extract<HubDatabase, { kind: "postgres" }>, what: string, ms = STORE_DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new FlashlexError(
            `PostgreSQL at ${db.address} (${db.display}): cannot use the hub database: no answer within ${ms / 1000} s (${what})`,
            "unavailable",
            {
              clientSafe: false,
            },
          ),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Bun's client says "connection refused" (ERR_POSTGRES_CONNECTION_REFUSED) also when the host
 * name does not resolve; a name that DNS does not know is said so, which points at a typo rather
 * than at a stopped server.
 */
async function explained(err: unknown, db: Extract<HubDatabase, { kind: "postgres" }>): Promise<unknown> {
  if (!(err instanceof FlashlexError) || !/connection refused$/.test(err.message)) return err;
  const host = db.address.startsWith("/") ? "" : db.address.replace(/:\d+$/, "");
  if (!host || isIP(host.replace(/^\[|\]$/g, ""))) return err;
  try {
    await lookup(host);
    return err;
  } catch (dns) {
    const code = (dns as { code?: unknown }).code;
    return new FlashlexError(
      `PostgreSQL at ${db.address} (${db.display}): cannot use the hub database: the host name ${host} does not resolve (DNS: ${typeof code === "string" ? code : "lookup failed"})`,
      "unavailable",
      { cause: err, clientSafe: false },
    );
  }
}

/** The HubSql seam over a pool (or, inside `transaction`, over one reserved connection). */
function postgresHubSql(client: SQL, fail: (err: unknown) => unknown, db: Extract<HubDatabase, { kind: "postgres" }>, inTransaction = false): HubSql {
  const query = async (sql: string, values?: readonly HubSqlValue[]) => {
    try {
      const work = client.unsafe(numbered(sql), values ? [...values] : []);
      // inside a transaction the transaction's own deadline bounds every statement
      return inTransaction ? await work : await withDeadline(Promise.resolve(work), db, "a statement");
    } catch (err) {
      throw fail(err);
    }
  };
  return {
    dialect: "postgres",
    all: async <T>(sql: string, values?: readonly HubSqlValue[]) => ((await query(sql, values)) as Record<string, unknown>[]).map((r) => narrowRow<T>(r)),
    async get<T>(sql: string, values?: readonly HubSqlValue[]) {
      const rows = (await query(sql, values)) as Record<string, unknown>[];
      return rows[0] ? narrowRow<T>(rows[0]) : undefined;
    },
    async run(sql, values) {
      const result = (await query(sql, values)) as { count?: number | bigint };
      return { changes: Number(result.count ?? 0) };
    },
    async transaction<T>(fn: (tx: HubSql) => Promise<T>, options?: { durable?: boolean }): Promise<T> {
      if (inTransaction) throw new Error("nested transactions are not supported");
      const run = async (tx: SQL) => {
        if (options?.durable === false) await tx.unsafe("SET LOCAL synchronous_commit TO off");
        return fn(postgresHubSql(tx, fail, db, true));
      };
      try {
        return (await withDeadline(Promise.resolve(client.begin((tx) => run(tx as unknown as SQL))), db, "a transaction")) as T;
      } catch (err) {
        throw fail(err);
      }
    },
    // Bun's close waits for every query it holds unless told a bound: a server that stopped
    // answering (frozen, a lost network) kept `hub export` alive for good after its deadline.
    close: () => client.close({ timeout: CLOSE_WAIT_SECONDS }),
  };
}

/** `?` placeholders → `$1`, `$2`, ... (outside quoted text; the hub's statements have no `?` in literals). */
export function numbered(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = "";
  for (const c of sql) {
    if (c === "'") quoted = !quoted;
    out += c === "?" && !quoted ? `$${++n}` : c;
  }
  return out;
}

/**
 * Brings the database to the newest schema, or refuses it. In one transaction under the advisory
 * lock: a database without `schema_version` must hold no tables (else it is someone else's);
 * one at a version newer than `migrations` is used as it is when the hub that migrated it said
 * this version may read it (`schema_compat`, as SQLite's in shared/sqlite/migrate.ts), else
 * refused (migrate.ts newerSchema); with `create`, one that already holds a hub is refused, unless it is
 * what an init that did not finish left (a schema, and no hub identity, token or thing:
 * `unfinishedInit`), which this init takes over. `readableFrom`: the oldest version that may use
 * what `migrations` leave (HUB_READABLE_FROM), written to `schema_compat` whenever this migrates,
 * and when the row there says less. Returns the version it migrated from (0: a new database), or
 * undefined when there was nothing to do.
 */
export async function migratePostgres(
  client: SQL,
  migrations: readonly Migration[],
  readableFrom: number,
  db: HubDatabase,
  create: boolean,
): Promise<number | undefined> {
  return await client.begin(async (tx) => {
    await tx.unsafe("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    const tables = (
      (await tx.unsafe("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name")) as {
        table_name: string;
      }[]
    ).map((r) => r.table_name);
    let version = 0;
    if (tables.includes("schema_version")) {
      const [row] = (await tx.unsafe("SELECT COALESCE(MAX(version), 0) AS version FROM schema_version")) as { version: number | bigint }[];
      version = Number(row?.version ?? 0);
      if (create && version > 0 && !(await unfinishedInit(tx, tables))) {
        throw new ConfigError(
          `${db.display}: already holds a FlashLex hub (schema version ${version}); \`hub init --db\` needs an empty database: create one (createdb) or point the new hub home at this one's hub.yml`,
        );
      }
    } else if (tables.length > 0) {
      throw new ConfigError(
        `${db.display}: not a FlashLex database (it holds other tables: ${tables.slice(0, 5).join(", ")}); create an empty database for the hub (createdb)`,
      );
    } else if (!create) {
      // As a missing hub.db: a pg_restore not yet run, or a URL naming another (empty) database.
      // Made here, the hub would start empty, refuse every thing and its own token, and say nothing.
      throw new ConfigError(
        `${db.display}: holds no FlashLex hub (an empty database); restore the hub's database into it (pg_restore) or point hub.database.url at it: only \`hub init --db\` makes a new hub`,
      );
    } else {
      await tx.unsafe("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    }
    const saidReadableFrom = tables.includes("schema_compat") ? await compatRow(tx, version) : undefined;
    if (version > migrations.length) {
      if (saidReadableFrom !== undefined && saidReadableFrom <= migrations.length) return undefined;
      throw new ConfigError(newerSchema(db.display, version, migrations.length, saidReadableFrom));
    }
    for (let step = version; step < migrations.length; step++) {
      await tx.unsafe(migrations[step]!.postgres);
      await tx.unsafe("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", [step + 1, Date.now()]);
    }
    if (version < migrations.length || saidReadableFrom === undefined || saidReadableFrom > readableFrom) {
      // made anew: one changed by hand (other columns) would fail the INSERT
      await tx.unsafe("DROP TABLE IF EXISTS schema_compat");
      await tx.unsafe("CREATE TABLE schema_compat (version INTEGER NOT NULL, readable_from INTEGER NOT NULL)");
      await tx.unsafe("INSERT INTO schema_compat (version, readable_from) VALUES ($1, $2)", [migrations.length, readableFrom]);
    }
    return version < migrations.length ? version : undefined;
  });
}

/**
 * What `schema_compat` says of schema `version`, as SQLite's (shared/sqlite/migrate.ts): a
 * schema version from 1 to `version`, from the one row of a table with the two columns. Anything
 * else (other columns, several rows, NULL, 0) says nothing.
 */
async function compatRow(tx: SQL, version: number): Promise<number | undefined> {
  const columns = (
    (await tx.unsafe("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'schema_compat'")) as {
      column_name: string;
    }[]
  ).map((c) => c.column_name);
  if (!columns.includes("version") || !columns.includes("readable_from")) return undefined;
  const rows = (await tx.unsafe("SELECT version::text AS version, readable_from::text AS readable_from FROM schema_compat LIMIT 2")) as {
    version: string | null;
    readable_from: string | null;
  }[];
  if (rows.length !== 1 || rows[0]!.version !== String(version) || rows[0]!.readable_from === null) return undefined;
  const said = Number(rows[0]!.readable_from);
  return /^\d+$/.test(rows[0]!.readable_from) && said >= 1 && said <= version ? said : undefined;
}

/**
 * True when the database holds the schema and nothing else: no hub claimed it, no token and no
 * thing is in it. That is what a `hub init --db` left when it stopped after making the schema
 * (PostgreSQL gone, a signal, a failed rename; init gives its claim and token back then).
 */
async function unfinishedInit(tx: SQL, tables: readonly string[]): Promise<boolean> {
  if (!["hub_identity", "tokens", "things"].every((table) => tables.includes(table))) return false;
  const [row] = (await tx.unsafe("SELECT (SELECT count(*) FROM hub_identity) + (SELECT count(*) FROM tokens) + (SELECT count(*) FROM things) AS n")) as {
    n: number | bigint | string;
  }[];
  return Number(row?.n) === 0;
}

/**
 * What the client threw, as the hub reports it: cannot connect, refused login, server shutting
 * down, too many connections → FlashlexError `unavailable` naming HOST:PORT and the database
 * (never its password); a missing privilege → `permission`; the server's other refusals by their
 * SQLSTATE (SERVER_REFUSALS: read-only, full, try-later, damaged, io); a FlashlexError passes
 * through; anything else (a statement's own error, such as a unique violation) passes through
 * unchanged, for the caller to judge.
 */
export function postgresError(err: unknown, db: Extract<HubDatabase, { kind: "postgres" }>): unknown {
  if (err instanceof FlashlexError || err === null || typeof err !== "object") return err;
  const e = err as PostgresErrorLike;
  const code = typeof e.code === "string" ? e.code : "";
  const sqlstate = typeof e.errno === "string" ? e.errno : "";
  const message = typeof e.message === "string" ? oneLine(e.message) : String(err);
  let reason: string | undefined;
  if (INSUFFICIENT_PRIVILEGE_SQLSTATE.test(sqlstate)) {
    const role = db.display.match(/^postgres:\/\/([^@/]+)@/)?.[1] ?? "ROLE";
    return new FlashlexError(
      `PostgreSQL at ${db.address} (${db.display}): the role may not do what the hub needs: ${message} (${sqlstate}); give the hub a database its role owns (createdb --owner ${role} DATABASE), or GRANT CREATE ON SCHEMA public TO ${role}`,
      "permission",
      { cause: err, clientSafe: false },
    );
  }
  const refusal = sqlstate ? SERVER_REFUSALS.find((r) => r.sqlstate.test(sqlstate)) : undefined;
  // PL/pgSQL's "PL/pgSQL function r() line 1 at RAISE", an SQL function's "SQL function "f" statement 1";
  // not "unnamed portal parameter $1 = '...'", which is the hub's own statement's value
  const routine = typeof e.where === "string" ? e.where.match(/\b(?:PL\/pgSQL|SQL) function [^\n]{1,200}/)?.[0] : undefined;
  if (refusal || (sqlstate && routine)) {
    const what = refusal?.what ?? `the database refused the statement (${routine})`;
    return new FlashlexError(`PostgreSQL at ${db.address} (${db.display}): ${what}: ${message} (${sqlstate})`, refusal?.kind ?? "io", {
      cause: err,
      clientSafe: false,
    });
  }
  if (code === "ERR_POSTGRES_CONNECTION_REFUSED") reason = "connection refused";
  else if (code === "ERR_POSTGRES_CONNECTION_CLOSED") reason = "the server closed the connection";
  else if (/TIMEOUT/.test(code) || /timed? ?out/i.test(message)) reason = "no answer (timed out)";
  else if (/^ERR_POSTGRES_(TLS|SSL|CHANNEL_BINDING|UNSUPPORTED_AUTH|AUTHENTICATION|INVALID_SERVER)/.test(code)) reason = message;
  else if (UNAVAILABLE_SQLSTATE.test(sqlstate)) reason = `${message} (${sqlstate})`;
  else if ((e as { syscall?: unknown }).syscall || /^E[A-Z]+$/.test(code)) reason = message;
  if (!reason) return err;
  return new FlashlexError(`PostgreSQL at ${db.address} (${db.display}): cannot use the hub database: ${reason}`, "unavailable", {
    cause: err,
    clientSafe: false,
  });
}
