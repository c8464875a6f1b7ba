/**
 * The hub's database setting (src/hub/store/database-url.ts) and the URL mask every printed line
 * goes through (src/shared/redact-url.ts): a password never reaches an error, whatever it holds.
 * The inputs are the hostile trial's: passwords with `@`, `:`, `/`, `#` and `%` in them.
 */
import { describe, expect, test } from "bun:test";
import { parseHubDatabase, urlHoldsPassword } from "../../src/hub/store/database-url.ts";
import { ConfigError } from "../../src/shared/errors.ts";
import { formatFields } from "../../src/shared/log.ts";
import { redactUrl } from "../../src/shared/redact-url.ts";

const HOSTILE = ["postgres://we@ird:p@ss:w/rd#1%@127.0.0.1:55432/weird", "postgres://flashlex:p@ss/w0rd@host/db", "postgres://u:hidden-pw@127.0.0.1:99999/hub"];

describe("database URLs", () => {
  test("a URL that does not parse is never echoed: the error names where it came from, not its value", () => {
    for (const url of HOSTILE) {
      let error: unknown;
      try {
        parseHubDatabase(url, "hub.db", "$FLASHLEX_HUB_DB");
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toStartWith("$FLASHLEX_HUB_DB: ");
      for (const piece of ["p@ss", "w0rd", "rd#1", "hidden-pw", "ird:"]) expect(message).not.toContain(piece);
    }
  });

  test("a host no resolver takes is refused, not carried into every line that names the server (a 15,000-character refusal: attack round 26, F5)", () => {
    expect(() => parseHubDatabase(`postgres://u:pw@${"a".repeat(5000)}:5432/x`, "hub.db", "--db")).toThrow(
      "--db: its host is longer than a DNS name may be (253 characters, 63 between dots) (the value is not shown",
    );
    expect(parseHubDatabase(`postgres://u:pw@${"a".repeat(63)}.lan:5432/x`, "hub.db", "--db").kind).toBe("postgres");
  });

  test("the mask hides everything between // and the last @, so a password holding @ or / stays hidden", () => {
    expect(redactUrl("at postgres://flashlex:p@ss/w0rd@host/db now")).toBe("at postgres://***@host/db now");
    expect(redactUrl("postgres://we@ird:p@ss:w/rd#1%@127.0.0.1:55432/weird")).toBe("postgres://***@127.0.0.1:55432/weird");
    expect(redactUrl("http://host:8080/path and mqtts://broker")).toBe("http://host:8080/path and mqtts://broker");
    expect(redactUrl("database=postgres://flashlex@127.0.0.1:5432/hub")).toBe("database=postgres://flashlex@127.0.0.1:5432/hub");
    expect(formatFields({ error: "cannot open postgres://a:s3cr@t@h/db" })).not.toContain("s3cr");
  });

  test("a good URL: display and address without the password; ?host=/dir names the unix socket", () => {
    const db = parseHubDatabase("postgres://flashlex:pw@db.example:6543/hub", "hub.db", "--db");
    expect(db).toMatchObject({ kind: "postgres", display: "postgres://flashlex@db.example:6543/hub", address: "db.example:6543" });
    const socket = parseHubDatabase("postgres://flashlex@localhost/hub?host=/run/postgresql", "hub.db", "--db");
    expect(socket).toMatchObject({ address: "/run/postgresql/.s.PGSQL.5432" });
    expect(socket.display).not.toContain("pw");
  });

  test("an sslmode libpq does not know is 78 naming the setting and the modes (Bun's own refusal was an internal error, 70)", () => {
    expect(() => parseHubDatabase("postgres://flashlex:pw@h/hub?sslmode=bogus", "hub.db", "--db")).toThrow(
      "--db: sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full",
    );
    for (const mode of ["disable", "require", "verify-full"])
      expect(parseHubDatabase(`postgres://h/hub?sslmode=${mode}`, "hub.db", "--db").kind).toBe("postgres");
  });

  test("a password in the URL, as USER:PASSWORD@ or libpq's ?password=, makes hub.yml the owner's alone", () => {
    expect(urlHoldsPassword("postgres://flashlex:pw@h/hub")).toBe(true);
    expect(urlHoldsPassword("postgres://flashlex@h/hub?password=S3cr3t")).toBe(true); // was 0644
    expect(urlHoldsPassword("postgres://flashlex@h/hub?PASSWORD=S3cr3t")).toBe(true);
    expect(urlHoldsPassword("postgres://flashlex@h/hub?sslmode=require")).toBe(false);
  });
});
