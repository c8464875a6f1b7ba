/**
 * The error taxonomy (src/shared/errors.ts, src/shared/foreign-errors.ts): real errors, made by the real
 * libraries here (both SQLite drivers, the file system, BoringSSL, yaml, cac), get the kind and
 * the exit code they mean, and the hub's HTTP edge maps the same kinds to statuses.
 */

import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { cac } from "cac";
import { parseDocument } from "yaml";
import { EXIT_CODE_OF_KIND, ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { generateRsaKeyPair } from "../../src/crypto/keys.ts";
import { errorToResponse, HTTP_STATUS_OF_KIND } from "../../src/hub/http/envelope.ts";
import { ERROR_KINDS, type ErrorKind, FlashlexError, oneLine } from "../../src/shared/errors.ts";
import { toFlashlexError } from "../../src/shared/foreign-errors.ts";
import { openBunSqlite } from "../../src/shared/sqlite/bun-sqlite.ts";
import type { OpenSqlDatabase } from "../../src/shared/sqlite/driver.ts";
import { openWasmSqlite } from "../../src/shared/sqlite/wasm-sqlite.ts";
import { OperationTimeout } from "../../src/thing/mqtt/session.ts";
import { makeTestPki } from "../support/pki.ts";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("FlashlexError", () => {
  test("carries a kind; main.ts maps every kind, and only kinds, to an exit code", () => {
    expect(exitCodeOf(new FlashlexError("x", "full"))).toBe(ExitCode.IO);
    expect(exitCodeOf(new FlashlexError("x", "try-later"))).toBe(ExitCode.TEMPFAIL);
    expect(exitCodeOf(new FlashlexError("x", "config"))).toBe(78);
    expect(exitCodeOf(new FlashlexError("x", "conflict"))).toBe(65);
    expect(Object.keys(EXIT_CODE_OF_KIND).sort()).toEqual([...ERROR_KINDS].sort());
  });

  test("an unknown error is a bug (70) and keeps only its first line", () => {
    const err = toFlashlexError(new TypeError("line one\n    at somewhere (file.ts:1:1)"));
    expect(err.kind).toBe("bug");
    expect(err.message).toBe("line one");
    expect(exitCodeOf("a string")).toBe(70);
  });

  test("an MQTT operation that timed out is the broker unavailable (69), not a bug (70), should one reach an exit", () => {
    const timeout = new OperationTimeout("PUBACK not acknowledged within 5 s");
    expect([timeout.kind, exitCodeOf(timeout), toFlashlexError(timeout).message]).toEqual(["unavailable", 69, "PUBACK not acknowledged within 5 s"]);
  });
});

describe("oneLine", () => {
  test("keeps the first non-blank line, whatever ends it: a lone CR (which overwrote the line on a terminal), VT, FF, NEL, U+2028/9", () => {
    for (const end of ["\n", "\r\n", "\r", "\v", "\f", "\u0085", "\u2028", "\u2029"]) {
      expect(oneLine(`  ${end}bad value${end}  at line 2`), JSON.stringify(end)).toBe("bad value");
    }
    expect(oneLine("one line")).toBe("one line");
  });
});

describe("SQLite errors of both drivers name the file and get their kind", () => {
  const drivers: Record<string, OpenSqlDatabase> = { "bun:sqlite": openBunSqlite, "node-sqlite3-wasm": openWasmSqlite };
  for (const [name, open] of Object.entries(drivers)) {
    test(`${name}: full (SQLITE_FULL via max_page_count), damaged (a text file), read-only`, () => {
      const dir = mkdtempSync(join(tmpdir(), "flashlex-errors-"));
      try {
        const file = join(dir, "full.db");
        const db = open(file);
        db.exec("CREATE TABLE t (v BLOB)");
        db.exec("PRAGMA max_page_count = 8");
        const full = toFlashlexError(
          thrown(() =>
            db.transaction(() => {
              for (let i = 0; i < 100; i++) db.run("INSERT INTO t VALUES (?)", [new Uint8Array(4000)]);
            }),
          ),
        );
        db.close();
        expect(full.kind).toBe("full");
        expect(exitCodeOf(full)).toBe(74);
        expect(full.message).toStartWith(`${file}: `);
        expect(full.message).toContain("SQLITE_FULL");

        const text = join(dir, "text.db");
        writeFileSync(text, "flashlex:\n  app: {}\n".repeat(100));
        const damaged = toFlashlexError(thrown(() => open(text).get("SELECT count(*) FROM sqlite_schema")));
        expect(damaged.kind).toBe("damaged");
        expect(exitCodeOf(damaged)).toBe(74);
        expect(damaged.message).toStartWith(`${text}: `);
        expect(damaged.message).toContain("SQLITE_NOTADB");

        const ro = open(file, { readonly: true });
        const readOnly = toFlashlexError(thrown(() => ro.exec("CREATE TABLE u (x)")));
        ro.close();
        expect(readOnly.kind).toBe("read-only");
        expect(readOnly.message).toStartWith(`${file}: `);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("bun:sqlite: a database locked by another connection is try-later (75)", () => {
    const dir = mkdtempSync(join(tmpdir(), "flashlex-errors-"));
    try {
      const file = join(dir, "busy.db");
      const holder = new Database(file);
      holder.run("CREATE TABLE t (v)");
      holder.run("BEGIN EXCLUSIVE");
      const db = openBunSqlite(file);
      const busy = toFlashlexError(thrown(() => db.exec("INSERT INTO t VALUES (1)")));
      holder.run("ROLLBACK");
      holder.close();
      db.close();
      expect(busy.kind).toBe("try-later");
      expect(exitCodeOf(busy)).toBe(75);
      expect(busy.message).toStartWith(`${file}: `);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("file-system, TLS, YAML and command-line errors", () => {
  test("errno: ENOENT and EISDIR are I/O (74) naming the path", () => {
    const path = join(tmpdir(), `flashlex-missing-${process.pid}`, "file");
    const missing = toFlashlexError(thrown(() => readFileSync(path)));
    expect(missing.kind).toBe("io");
    expect(missing.message).toBe(`${path}: no such file or directory (ENOENT)`);
    expect(toFlashlexError(thrown(() => readFileSync(tmpdir()))).kind).toBe("io");
  });

  test("errno: ENOTDIR names the file on the way, however deep the path goes below it", () => {
    const dir = mkdtempSync(join(tmpdir(), "flashlex-errors-"));
    try {
      writeFileSync(join(dir, "a-file"), "x");
      const path = join(dir, "a-file", "sub", "deeper");
      const err = toFlashlexError(thrown(() => mkdirSync(path, { recursive: true })));
      expect([err.kind, err.message]).toEqual(["io", `${path}: ${join(dir, "a-file")} is a file, not a directory (ENOTDIR)`]);
      // a directory to be made where the file is
      const made = toFlashlexError(thrown(() => mkdirSync(join(dir, "a-file"), { recursive: true })));
      expect(made.message).toBe(`${join(dir, "a-file")}: a file, not a directory (EEXIST)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("BoringSSL: a key that is not the certificate's, garbage PEM, a garbage CA are configuration (78), in words", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flashlex-errors-"));
    try {
      const pki = await makeTestPki(dir);
      const other = await generateRsaKeyPair();
      const mismatch = toFlashlexError(thrown(() => createSecureContext({ cert: pki.thing.certPem, key: other.privateKeyPem })));
      expect(mismatch.kind).toBe("config");
      expect(mismatch.message).toContain("the private key does not belong to the certificate");
      expect(mismatch.message).not.toContain("error:0");
      const garbage = toFlashlexError(thrown(() => createSecureContext({ cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" })));
      expect(garbage.kind).toBe("config");
      const ca = toFlashlexError(thrown(() => createSecureContext({ ca: "not a certificate" })));
      expect(ca.kind).toBe("config");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("yaml: a parse error and an alias bomb are configuration (78)", () => {
    const doc = parseDocument("a: [1, 2");
    expect(toFlashlexError(doc.errors[0]).kind).toBe("config");
    const bomb = parseDocument(
      [
        "a: &a [x, x, x, x, x, x, x, x, x, x]",
        ...Array.from(
          { length: 8 },
          (_, i) =>
            `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
              .fill(`*${String.fromCharCode(97 + i)}`)
              .join(", ")}]`,
        ),
      ].join("\n"),
    );
    expect(toFlashlexError(thrown(() => bomb.toJS({ maxAliasCount: 100 }))).kind).toBe("config");
  });

  test("cac: a missing flag value is usage (64)", () => {
    const cli = cac("x");
    cli
      .command("go", "")
      .option("--limit <n>", "")
      .action(() => {});
    cli.parse(["node", "x", "go", "--limit"], { run: false });
    expect(exitCodeOf(thrown(() => cli.runMatchedCommand()))).toBe(64);
  });
});

describe("the hub's HTTP edge maps the same kinds", () => {
  test("full, read-only and busy storage are 503 with Retry-After; no answer carries a path or a library's text", async () => {
    const expected: Record<ErrorKind, number> = {
      usage: 400,
      data: 400,
      conflict: 409,
      unavailable: 503,
      bug: 500,
      io: 500,
      full: 503,
      "read-only": 503,
      damaged: 500,
      "try-later": 503,
      permission: 500,
      config: 500,
    };
    expect(HTTP_STATUS_OF_KIND).toEqual(expected);
    for (const kind of Object.keys(expected) as ErrorKind[]) {
      const { response, status } = errorToResponse(new FlashlexError(`/secret/path/hub.db: something (SQLITE_X)`, kind));
      expect(response.status).toBe(expected[kind]);
      expect(status).toBe(expected[kind]);
      const body: any = await response.json();
      expect(body.status).toBe("ERROR");
      expect(body.code).toBe(expected[kind]);
      if (status >= 500) {
        expect(JSON.stringify(body)).not.toContain("/secret/path");
        expect(JSON.stringify(body)).not.toContain("SQLITE");
      }
      expect(response.headers.get("retry-after")).toBe(status === 503 ? "30" : null);
    }
  });

  test("a raw SQLITE_FULL from the driver is a 503, not a 500", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flashlex-errors-"));
    try {
      const db = openBunSqlite(join(dir, "hub.db"));
      db.exec("CREATE TABLE t (v BLOB)");
      db.exec("PRAGMA max_page_count = 4");
      const err = thrown(() =>
        db.transaction(() => {
          for (let i = 0; i < 50; i++) db.run("INSERT INTO t VALUES (?)", [new Uint8Array(4000)]);
        }),
      );
      db.close();
      expect(errorToResponse(err).status).toBe(503);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
