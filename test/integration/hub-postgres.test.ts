/**
 * The compiled hub on PostgreSQL (docs/scaling.md, "Storage"), on loopback: Debian's PostgreSQL
 * 15 started by the test (own data directory, port and socket; stopped in afterAll), then
 *
 *   hub init --db URL   records the URL in hub.yml (0600: it holds a password), makes no hub.db
 *   hub thing create    a second command, on hub.yml's database
 *   hub serve --db URL  logs the database without its password; a thing collects over HTTP
 *   hub export --db URL another process reads the message back from PostgreSQL
 *   unreachable         a closed port: exit 69, one line naming HOST:PORT, no password
 *   malformed           a URL that is not one: exit 78, naming --db, no password
 *   hostile URLs        passwords holding @ : / # %: never printed (--db, $FLASHLEX_HUB_DB)
 *   no CREATE right     42501: exit 77 with a createdb --owner hint; nohost.invalid: DNS
 *   server refusals     a read-only database, a trigger's RAISE, an added constraint: 74; never 70 or 65
 *   frozen (SIGSTOP)    exit 69 at the store's deadline, not a hang
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { type ProvisionedThing, provisionThing } from "../support/distribution.ts";
import { listenOnLoopback, loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { startPostgres, type TestPostgres } from "../support/postgres.ts";
import { tally } from "../support/tally.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-hub-pg-"));
const hubDir = join(work, "hub");
let pg: TestPostgres;
let url: string;
let serving: Background | undefined;
let thing: ProvisionedThing;

const flashlex = async (args: string[], input?: string) => {
  const result = await run(args, { input, timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`flashlex ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
};

beforeAll(async () => {
  binaryPath();
  pg = await startPostgres(work);
  url = pg.createDatabase("hub");
}, 60_000);

afterAll(async () => {
  if (serving) await serving.stop(5_000);
  await pg?.stop();
  rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("hub on PostgreSQL (compiled binary)", () => {
  test("init --db records the database in hub.yml, owner-only; no hub.db; a second command uses it", async () => {
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    await flashlex([...loopbackHubInit(hubDir, apiPort, brokerPort, "127.0.0.1"), "--db", url, "--json"]);
    listenOnLoopback(hubDir);
    const yml = readFileSync(join(hubDir, "hub.yml"), "utf8");
    expect(yml).toContain(url);
    expect(statSync(join(hubDir, "hub.yml")).mode & 0o777).toBe(0o600);
    expect(existsSync(join(hubDir, "hub.db"))).toBe(false);
    thing = await provisionThing(flashlex, hubDir, work, "pgthing");
    const listed = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout);
    expect(listed.map((t: { id: string }) => t.id)).toStrictEqual([thing.id]);
  }, 60_000);

  test("serve --db: a thing collects over HTTP; `hub export` in another process reads it back from PostgreSQL", async () => {
    serving = start(["hub", "serve", "--dir", hubDir, "--db", url]);
    await serving.waitFor(/hub\.started/, 30_000);
    expect(serving.output()).toContain(`database=postgres://flashlex@127.0.0.1:${pg.port}/hub`);

    const collected = JSON.parse((await flashlex(["collect", ...thing.flags, "--json"], '{"stored":"in postgres"}')).stdout);
    const id = collected.messageId;
    expect(typeof id).toBe("string");

    const zip = join(work, "export.zip");
    const exported = await flashlex(["hub", "export", thing.name, "--dir", hubDir, "--db", url, "-o", zip]);
    expect(exported.stdout).toContain(": 1 message\n");
    const files = unzipSync(readFileSync(zip));
    const names = Object.keys(files);
    expect(names).toHaveLength(1);
    expect(names[0]).toEndWith(`/${id}.json`);
    const stored = JSON.parse(new TextDecoder().decode(files[names[0]!]!));
    expect(stored).toMatchObject({ flthingspk: thing.id, messagetype: "egress" });
    expect(JSON.stringify(stored.payload)).toContain("in postgres");

    expect(serving.output()).not.toContain(pg.password);
    expect(await serving.stop(10_000)).toBe(0);
    serving = undefined;
  }, 90_000);

  test("hub backup: the home's files are copied, and a note says the PostgreSQL database is not in it (pg_dump), without the password", async () => {
    const target = join(work, "backup");
    const result = await flashlex(["hub", "backup", "--dir", hubDir, target]);
    expect(result.stdout).toMatch(new RegExp(`backed up ${hubDir} as of \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ to ${target}: `));
    expect(result.stdout).toContain("note: the database is PostgreSQL (postgres://");
    expect(result.stdout).toContain("back it up with pg_dump");
    expect(result.stdout).not.toContain(pg.password);
    expect(existsSync(join(target, "hub.db"))).toBe(false);
    expect(readFileSync(join(target, "ca-key.pem"))).toEqual(readFileSync(join(hubDir, "ca-key.pem")));
  }, 60_000);

  test("another hub's home pointed at this database (a wrong --db, a leftover $FLASHLEX_HUB_DB): 78 naming both hubs, nothing created", async () => {
    const otherDir = join(work, "other-hub");
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    await flashlex([...loopbackHubInit(otherDir, apiPort, brokerPort, "127.0.0.1"), "--json"]);
    const before = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout).length;
    for (const [args, env] of [
      [["hub", "thing", "create", "intruder", "--dir", otherDir, "--db", url], {}],
      [["hub", "thing", "create", "intruder", "--dir", otherDir], { FLASHLEX_HUB_DB: url }],
    ] as [string[], Record<string, string>][]) {
      const refused = await run(args, { env, timeoutMs: 60_000 });
      expect(refused.code, refused.stderr).toBe(78);
      expect(refused.stderr).toContain("this database belongs to another hub");
      expect(refused.stderr).toContain(otherDir);
      expect(refused.stderr).not.toContain(pg.password);
    }
    expect(JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout).length).toBe(before);
  }, 60_000);

  test("hub init on a database another hub uses: 78 naming it, no home made, no token added; on what an init that stopped after the schema left: it takes it over (it was refused)", async () => {
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const tokens = (database: string) => Number(/tokens=(\d+)/.exec(pg.psql("SELECT 'tokens=' || count(*) FROM tokens", database))![1]);
    const tokensBefore = tokens("hub");
    const second = join(work, "second-init");
    const refused = await run([...loopbackHubInit(second, apiPort, brokerPort, "127.0.0.1"), "--db", url, "--json"], { timeoutMs: 60_000 });
    expect(refused.code, refused.stderr).toBe(78);
    const errors = refused.stderr.split("\n").filter((line) => line.startsWith("flashlex: "));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("already holds a FlashLex hub");
    expect(errors[0]).not.toContain(pg.password);
    expect(existsSync(second)).toBe(false);
    expect(tokens("hub")).toBe(tokensBefore);

    // What an init that stopped after making the schema leaves: the schema, and no claim, token or thing.
    const leftUrl = pg.createDatabase("unfinished");
    const first = join(work, "unfinished-first");
    await flashlex([...loopbackHubInit(first, apiPort, brokerPort, "127.0.0.1"), "--db", leftUrl, "--json"]);
    rmSync(first, { recursive: true, force: true });
    pg.psql("DELETE FROM tokens; DELETE FROM hub_identity", "unfinished");
    const again = join(work, "unfinished-again");
    const taken = await run([...loopbackHubInit(again, apiPort, brokerPort, "127.0.0.1"), "--db", leftUrl, "--json"], { timeoutMs: 60_000 });
    expect(taken.code, taken.stderr).toBe(0);
    expect(tokens("unfinished")).toBe(1);
    expect((await run(["hub", "thing", "list", "--dir", again], { timeoutMs: 60_000 })).code).toBe(0);

    // An init whose token cannot be stored (a trigger refuses it as a missing privilege would:
    // 77) claims nothing either: the claim and the token are one transaction, and the next init
    // takes the database over.
    const refusingUrl = pg.createDatabase("refusing");
    const made = join(work, "refusing-first");
    await flashlex([...loopbackHubInit(made, apiPort, brokerPort, "127.0.0.1"), "--db", refusingUrl, "--json"]);
    rmSync(made, { recursive: true, force: true });
    pg.psql("DELETE FROM tokens; DELETE FROM hub_identity", "refusing");
    pg.psql(
      "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'no tokens today'; END $$; CREATE TRIGGER refuse BEFORE INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION refuse()",
      "refusing",
    );
    const failing = join(work, "refusing-second");
    const failed = await run([...loopbackHubInit(failing, apiPort, brokerPort, "127.0.0.1"), "--db", refusingUrl, "--json"], { timeoutMs: 60_000 });
    expect(failed.code, failed.stderr).toBe(77);
    expect(existsSync(failing)).toBe(false);
    expect(pg.psql("SELECT 'claims=' || count(*) FROM hub_identity", "refusing")).toContain("claims=0");
    pg.psql("DROP TRIGGER refuse ON tokens", "refusing");
    const after = await run([...loopbackHubInit(failing, apiPort, brokerPort, "127.0.0.1"), "--db", refusingUrl, "--json"], { timeoutMs: 60_000 });
    expect(after.code, after.stderr).toBe(0);

    // Two inits at once on one new database: one hub, the other 78 with nothing made, one token.
    const raceUrl = pg.createDatabase("raced");
    const homes = [join(work, "raced-a"), join(work, "raced-b")];
    const raced = await Promise.all(
      homes.map((home) => run([...loopbackHubInit(home, apiPort, brokerPort, "127.0.0.1"), "--db", raceUrl, "--json"], { timeoutMs: 60_000 })),
    );
    expect(raced.map((r) => r.code).sort()).toStrictEqual([0, 78]);
    const loser = raced.findIndex((r) => r.code === 78);
    expect(raced[loser]!.stderr).toMatch(/already holds a FlashLex hub|belongs to another hub/);
    expect(existsSync(homes[loser]!)).toBe(false);
    expect(tokens("raced")).toBe(1);
    tally("badInputs", 4);
  }, 60_000);

  test("a PostgreSQL that cannot be reached: exit 69, one line naming HOST:PORT, without the password", async () => {
    const closed = await freePort();
    const result = await run(["hub", "thing", "list", "--dir", hubDir, "--db", `postgres://flashlex:${pg.password}@127.0.0.1:${closed}/hub`], {
      timeoutMs: 60_000,
    });
    expect(result.code).toBe(69);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(`127.0.0.1:${closed}`);
    expect(result.stderr + result.stdout).not.toContain(pg.password);

    const denied = await run(["hub", "serve", "--dir", hubDir, "--db", `postgres://flashlex:not-the-password@127.0.0.1:${pg.port}/hub`], { timeoutMs: 60_000 });
    expect(denied.code).toBe(69);
    expect(denied.stderr).toContain(`127.0.0.1:${pg.port}`);
    expect(denied.stderr + denied.stdout).not.toContain("not-the-password");
  }, 90_000);

  test("a malformed database URL: exit 78 naming --db, without the password", async () => {
    const result = await run(["hub", "thing", "list", "--dir", hubDir, "--db", "postgres://flashlex:hidden-pw@127.0.0.1:99999/hub"], { timeoutMs: 30_000 });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain("--db");
    expect(result.stderr).not.toContain("hidden-pw");
  }, 60_000);
  test("hostile URLs: a password holding @ : / # % is never printed, from --db or $FLASHLEX_HUB_DB", async () => {
    const weird = await run(["hub", "init", "--dir", join(work, "weird"), "--db", "postgres://we@ird:p@ss:w/rd#1%@127.0.0.1:55432/weird"], {
      timeoutMs: 30_000,
    });
    expect(weird.code).toBe(78);
    expect(weird.stderr).toContain("--db");
    for (const piece of ["p@ss", "rd#1", "ird:"]) expect(weird.stderr + weird.stdout).not.toContain(piece);

    const env = await run(["hub", "thing", "list", "--dir", hubDir], { env: { FLASHLEX_HUB_DB: "postgres://flashlex:p@ss/w0rd@host/db" }, timeoutMs: 30_000 });
    expect(env.code).toBe(78);
    expect(env.stderr).toContain("$FLASHLEX_HUB_DB");
    expect(env.stderr + env.stdout).not.toContain("w0rd");
  }, 60_000);

  test("a role that may not create tables: 77 with a createdb --owner hint; an unknown host: a DNS failure", async () => {
    pg.psql("CREATE ROLE weak LOGIN PASSWORD 'weak-pw'");
    const locked = pg.createDatabase("locked");
    pg.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", "locked");
    const weakUrl = locked.replace(/flashlex:[^@]+@/, "weak:weak-pw@");
    const denied = await run(["hub", "init", "--dir", join(work, "weak"), "--db", weakUrl], { timeoutMs: 60_000 });
    expect(denied.code).toBe(77);
    expect(denied.stderr).toContain(`PostgreSQL at 127.0.0.1:${pg.port}`);
    expect(denied.stderr).toContain("createdb --owner weak");
    expect(denied.stderr).not.toContain("weak-pw");

    const dns = await run(["hub", "thing", "list", "--dir", hubDir, "--db", "postgres://flashlex:pw@nohost.invalid:5432/hub"], { timeoutMs: 60_000 });
    expect(dns.code).toBe(69);
    expect(dns.stderr).toContain("does not resolve");
  }, 90_000);

  test("the server's own refusals are not the hub's bug: a read-only database 74 (read-only), a trigger's RAISE or an added constraint 74 (io), each one line naming the SQLSTATE; nothing made", async () => {
    const before = JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout).length;
    const zip = join(work, "refused.zip");
    pg.psql("ALTER DATABASE hub SET default_transaction_read_only = on");
    try {
      const readOnly = await run(["hub", "thing", "create", "refused", "--dir", hubDir, "-o", zip], { timeoutMs: 60_000 });
      expect(readOnly.code, readOnly.stderr).toBe(74);
      expect(readOnly.stderr).toContain("the database is read-only");
      expect(readOnly.stderr).toContain("(25006)");
      expect(readOnly.stderr.trim().split("\n")).toHaveLength(1);
    } finally {
      pg.psql("ALTER DATABASE hub RESET default_transaction_read_only");
    }
    // a trigger's RAISE, with a code of its own and "unique" in its words: not "a thing named ... exists" (65)
    pg.psql(
      "CREATE FUNCTION no_things() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'U0001', MESSAGE = 'no new things today, unique or not'; END $$; CREATE TRIGGER no_things BEFORE INSERT ON things FOR EACH ROW EXECUTE FUNCTION no_things()",
      "hub",
    );
    try {
      const raised = await run(["hub", "thing", "create", "refused", "--dir", hubDir, "-o", zip], { timeoutMs: 60_000 });
      expect(raised.code, raised.stderr).toBe(74);
      expect(raised.stderr).toContain("the database refused the statement (PL/pgSQL function no_things() line 1 at RAISE)");
      expect(raised.stderr).toContain("no new things today, unique or not (U0001)");
      expect(raised.stderr).not.toContain(pg.password);
    } finally {
      pg.psql("DROP TRIGGER no_things ON things; DROP FUNCTION no_things()", "hub");
    }
    // a trigger that trips over a key of its own (an audit row a day): the second thing is refused
    // by the database (74), not "a thing named ... already exists" (65)
    pg.psql(
      "CREATE TABLE audit (day TEXT PRIMARY KEY, who TEXT); CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (to_char(now(), 'YYYY-MM-DD'), NEW.name); RETURN NEW; END $$; CREATE TRIGGER audit AFTER INSERT ON things FOR EACH ROW EXECUTE FUNCTION audit()",
      "hub",
    );
    try {
      await flashlex(["hub", "thing", "create", "audited", "--dir", hubDir, "-o", join(work, "audited.zip")]);
      const second = await run(["hub", "thing", "create", "audited2", "--dir", hubDir, "-o", zip], { timeoutMs: 60_000 });
      expect(second.code, second.stderr).toBe(74);
      expect(second.stderr).toContain("the database refused the statement (PL/pgSQL function audit() line 1 at SQL statement)");
      await flashlex(["hub", "thing", "delete", "audited", "--dir", hubDir]);
    } finally {
      pg.psql("DROP TRIGGER audit ON things; DROP FUNCTION audit(); DROP TABLE audit", "hub");
    }
    // a constraint the administrator added
    pg.psql("ALTER TABLE things ADD CONSTRAINT short_names CHECK (length(name) < 5) NOT VALID", "hub");
    try {
      const checked = await run(["hub", "thing", "create", "refused", "--dir", hubDir, "-o", zip], { timeoutMs: 60_000 });
      expect(checked.code, checked.stderr).toBe(74);
      expect(checked.stderr).toContain(
        'the database refused the row (a constraint in it): new row for relation "things" violates check constraint "short_names" (23514)',
      );
    } finally {
      pg.psql("ALTER TABLE things DROP CONSTRAINT short_names", "hub");
    }
    expect(existsSync(zip)).toBe(false);
    expect(JSON.parse((await flashlex(["hub", "thing", "list", "--dir", hubDir, "--json"])).stdout).length).toBe(before);
    tally("badInputs", 3);
  }, 90_000);

  test("hub export while PostgreSQL freezes mid-way: 69 at the store's deadline, not a hang; Ctrl-C then stops it within 5 s", async () => {
    // enough rows that the export is still reading pages when the server freezes
    pg.psql(
      `INSERT INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated)
       SELECT gen_random_uuid()::text, '${thing.id}', 'egress', '{"n":' || n || ',"pad":"' || repeat('x', 200) || '"}', 1000000 + n, '2026-12-01T00:00:00Z'
       FROM generate_series(1, 100000) AS n`,
      "hub",
    );
    const exportsDir = join(work, "frozen-exports");
    mkdirSync(exportsDir);
    /** `hub export` to `name`, the server frozen once its temporary file appears; exit code, stderr, seconds */
    const frozenExport = async (name: string, then: (proc: Background) => void) => {
      const proc = start(["hub", "export", thing.name, "--dir", hubDir, "--db", url, "-o", join(exportsDir, name)]);
      const started = performance.now();
      try {
        for (let i = 0; i < 600 && !readdirSync(exportsDir).some((f) => f.startsWith(`.${name}`)); i++) await Bun.sleep(10);
        pg.freeze();
        then(proc);
        const code = await proc.proc.exited;
        return { code, stderr: proc.output(), seconds: (performance.now() - started) / 1000 };
      } finally {
        pg.thaw();
      }
    };
    const deadline = await frozenExport("deadline.zip", () => {});
    expect(deadline.code).toBe(69);
    expect(deadline.stderr).toContain("no answer within 10 s");
    expect(deadline.seconds).toBeLessThan(30); // it hung until the server thawed (639 s once)
    expect(readdirSync(exportsDir)).toEqual([]);
    tally("faults");

    const interrupted = await frozenExport("interrupted.zip", (proc) => setTimeout(() => proc.proc.kill("SIGINT"), 500));
    expect(interrupted.code).toBe(130);
    expect(interrupted.stderr).toContain("hub export stopped by SIGINT");
    expect(interrupted.seconds).toBeLessThan(10);
    expect(existsSync(join(exportsDir, "interrupted.zip"))).toBe(false);
  }, 120_000);

  test("a frozen PostgreSQL (SIGSTOP): a command fails as unavailable (69) at the store's deadline instead of hanging", async () => {
    pg.freeze();
    try {
      const frozen = await run(["hub", "thing", "list", "--dir", hubDir, "--json"], { timeoutMs: 60_000 });
      expect(frozen.code).toBe(69);
      expect(frozen.stderr).toContain(`127.0.0.1:${pg.port}`);
      expect(frozen.stderr).toContain("no answer");
      expect(frozen.stderr).not.toContain(pg.password);

      // hub serve stopped while it waits for that database: it stops as asked (0), the failed
      // start said in its hub.stopped line (it was killed with 143; a listener alone gave 69)
      const starting = start(["hub", "serve", "--dir", hubDir]);
      await Bun.sleep(1_500);
      starting.proc.kill("SIGTERM");
      expect(await starting.proc.exited, starting.output()).toBe(0);
      expect(starting.output()).toMatch(/hub\.stopped signal=SIGTERM note="before it started" start_failed=".*no answer/);
      expect(starting.output()).not.toContain(pg.password);
    } finally {
      pg.thaw();
    }
  }, 90_000);
});
