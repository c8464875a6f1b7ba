/**
 * OpenSSL's subject name hash (src/crypto/name-hash.ts), which names the CRL file RabbitMQ's
 * Erlang ssl looks for, against `openssl x509 -hash` itself on real certificates: a plain CN,
 * and a subject whose values need the canonical form (case, runs of spaces, non-ASCII, IA5).
 */
import { expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { subjectNameHash } from "../../src/crypto/name-hash.ts";

const subjects = ["/CN=FlashLex hub CA", "/C=DE/O=  Flash   Lex  GmbH /CN=Hub CA Ünïcode/emailAddress=Ops@Example.COM", "/CN=a/CN=B  b"];

test("the hash is OpenSSL's for every subject", () => {
  const dir = mkdtempSync(join(tmpdir(), "flashlex-name-hash-"));
  try {
    for (const [i, subject] of subjects.entries()) {
      const cert = join(dir, `${i}.pem`);
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          join(dir, `${i}.key`),
          "-out",
          cert,
          "-subj",
          subject,
          "-days",
          "1",
          "-utf8",
        ],
        { stdio: "ignore" },
      );
      const expected = execFileSync("openssl", ["x509", "-in", cert, "-hash", "-noout"], { encoding: "utf8" }).trim();
      expect(subjectNameHash(readFileSync(cert, "utf8"))).toBe(expected);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("what is not a certificate is refused", () => {
  expect(() => subjectNameHash("not a certificate")).toThrow(/not a certificate/);
});
