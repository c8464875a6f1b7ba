/**
 * The egress token a one-shot collect keeps in the data directory (src/thing/egress/token-file.ts):
 * real files, and a real HTTP receiver on loopback for the refusal of a kept token.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/shared/log.ts";
import { deliverHttp } from "../../src/thing/egress/delivery.ts";
import { HubClock } from "../../src/thing/egress/hub-clock.ts";
import { TOKEN_FILE_NAME, TokenFile } from "../../src/thing/egress/token-file.ts";
import { ThingTokens, TOKEN_REUSE_SECONDS } from "../../src/thing/egress/tokens.ts";
import type { ThingIdentity } from "../../src/thing/identity.ts";
import type { ThingConfig } from "../../src/thing/settings.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-token-file-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const THING_ID = "6c0f5b5e-3c0e-4a8e-9a55-1c2d3e4f5a6b";

/** A thing's folder with three identity files (their content is not read here) and a data directory. */
function thingFolder(name: string, endpoint = "http://127.0.0.1:9") {
  const root = join(work, name);
  mkdirSync(join(root, "data"), { recursive: true });
  const paths = { rootCA: join(root, "ca.pem"), cert: join(root, "cert.pem"), privateKey: join(root, "key.pem") };
  for (const file of Object.values(paths)) writeFileSync(file, `${file}\n`);
  const config = {
    dataDir: join(root, "data"),
    paths: { ...paths, publicKey: undefined, database: join(root, "data", "subscription.db") },
    yaml: { thing: { id: THING_ID, name }, app: { api: { endpoint, env: "dev" } } },
  } as unknown as ThingConfig;
  return { config, paths, file: join(root, "data", TOKEN_FILE_NAME) };
}

const kept = { token: "a.b.c", offsetMs: 0, caPem: "-----BEGIN CERTIFICATE-----\n" };

const identity = (): ThingIdentity =>
  ({
    thingId: THING_ID,
    thingName: "x",
    caPem: "-----BEGIN CERTIFICATE-----\n",
    privateKey: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
    tokenAlgorithm: "ES256",
  }) as ThingIdentity;

describe("the token file", () => {
  test("read back within TOKEN_REUSE_SECONDS of its signing, 0600; not after, nor from before it was signed", () => {
    const { config, file } = thingFolder("fresh");
    const signedAt = Date.parse("2026-12-08T10:00:00Z");
    new TokenFile(config).write(kept, signedAt, new TokenFile(config).fingerprint());
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const tokens = new TokenFile(config);
    expect(tokens.read(signedAt)).toEqual({ ...kept, signedAtMs: signedAt });
    expect(tokens.read(signedAt + TOKEN_REUSE_SECONDS * 1000 - 1)?.token).toBe("a.b.c");
    expect(tokens.read(signedAt + TOKEN_REUSE_SECONDS * 1000)).toBeUndefined();
    // a clock stepped back: not a token from the future
    expect(tokens.read(signedAt - 1)).toBeUndefined();
  });

  test("any change to an identity file, or another thing name, is a miss: rewritten, replaced, chmod-ed", () => {
    const { config, paths } = thingFolder("changed");
    const changes: [string, () => void][] = [
      ["the key rewritten in place", () => writeFileSync(paths.privateKey, "another key\n")],
      ["the certificate replaced by rename", () => (writeFileSync(`${paths.cert}.new`, "cert\n"), renameSync(`${paths.cert}.new`, paths.cert))],
      ["the root CA chmod-ed", () => chmodSync(paths.rootCA, 0o640)],
    ];
    for (const [what, change] of changes) {
      new TokenFile(config).write(kept, Date.now(), new TokenFile(config).fingerprint());
      expect(new TokenFile(config).read()?.token, what).toBe("a.b.c");
      Bun.sleepSync(5); // a later ctime, on file systems that count in ms
      change();
      expect(new TokenFile(config).read(), what).toBeUndefined();
    }
    new TokenFile(config).write(kept, Date.now(), new TokenFile(config).fingerprint());
    const renamed = { ...config, yaml: { ...config.yaml, thing: { ...config.yaml.thing, name: "other" } } } as ThingConfig;
    expect(new TokenFile(renamed).read()).toBeUndefined();
  });

  test("a damaged, foreign, oversized or missing file is a miss, never an error; a write to a directory that is not there is none either", () => {
    const { config, file } = thingFolder("damaged");
    for (const content of ["", "{", "null", "[]", '{"token":1}', JSON.stringify({ token: "x", signedAtMs: Date.now() }), "x".repeat(300 * 1024)]) {
      writeFileSync(file, content);
      expect(new TokenFile(config).read(), content.slice(0, 40)).toBeUndefined();
    }
    rmSync(file);
    expect(new TokenFile(config).read()).toBeUndefined();
    mkdirSync(file);
    expect(new TokenFile(config).read()).toBeUndefined();
    rmSync(file, { recursive: true });
    const gone = { ...config, dataDir: join(work, "not-there") } as ThingConfig;
    expect(() => new TokenFile(gone).write(kept, Date.now(), "x")).not.toThrow();
  });
});

describe("the token file is only ever a regular file of this user's, holding a token (attack round 31)", () => {
  test("a FIFO or a link (to stdout, /dev/null, a good token file elsewhere) at its name is never written through or read: a miss, the write left undone (F1)", () => {
    const { config, file } = thingFolder("special");
    const fifo = Bun.spawnSync(["mkfifo", file]);
    expect(fifo.exitCode).toBe(0);
    new TokenFile(config).write(kept, Date.now(), new TokenFile(config).fingerprint()); // would block for ever on a FIFO without a reader
    expect(new TokenFile(config).read()).toBeUndefined();
    rmSync(file);
    for (const target of ["/dev/null", "/proc/self/fd/1"]) {
      symlinkSync(target, file);
      new TokenFile(config).write(kept, Date.now(), new TokenFile(config).fingerprint());
      expect(lstatSync(file).isSymbolicLink()).toBe(true);
      expect(new TokenFile(config).read()).toBeUndefined();
      rmSync(file);
    }
    // a link to a good token file elsewhere: not taken either
    const elsewhere = thingFolder("special-elsewhere");
    new TokenFile(elsewhere.config).write(kept, Date.now(), new TokenFile(config).fingerprint());
    symlinkSync(elsewhere.file, file);
    expect(new TokenFile(config).read()).toBeUndefined();
  });

  test("a file others may write, or a token that is not a compact JWS of a sane size, is a miss (F4, F5)", () => {
    const { config, file } = thingFolder("loose");
    const fingerprint = new TokenFile(config).fingerprint();
    new TokenFile(config).write(kept, Date.now(), fingerprint);
    chmodSync(file, 0o620);
    expect(new TokenFile(config).read()).toBeUndefined();
    chmodSync(file, 0o600);
    expect(new TokenFile(config).read()?.token).toBe("a.b.c");
    for (const token of ["a.b.c\r\nX-Injected: 1", "a.b", `${"a".repeat(5000)}.b.c`, "a.b.c.d", ""]) {
      writeFileSync(file, JSON.stringify({ ...kept, token, identity: fingerprint, signedAtMs: Date.now() }), { mode: 0o600 });
      expect(new TokenFile(config).read(), token.slice(0, 20)).toBeUndefined();
    }
  });

  test("the files are vouched for as they were before the identity check: a key replaced while it loads is a miss afterwards (F2)", async () => {
    const { config, paths } = thingFolder("swapped");
    const tokens = new ThingTokens(undefined, new TokenFile(config));
    await tokens.current(async () => {
      Bun.sleepSync(5);
      writeFileSync(paths.privateKey, "a key no one checked\n");
      return identity();
    });
    expect(new TokenFile(config).read()).toBeUndefined();
  });

  test("a kept token signed with a clock correction is reused by the next process, whose clock has measured none (F3)", async () => {
    const { config } = thingFolder("corrected");
    new TokenFile(config).write({ ...kept, offsetMs: -3_600_000 }, Date.now(), new TokenFile(config).fingerprint());
    const clock = new HubClock(createLogger({ write: () => {} }));
    const tokens = new ThingTokens(clock, new TokenFile(config));
    expect(tokens.hasKept()).toBe(true);
    let loads = 0;
    const again = await tokens.current(async () => (loads++, identity()));
    expect(again.reused).toBe(true);
    expect(again.token).toBe("a.b.c");
    expect(loads).toBe(0);
  });
});

describe("a one-shot delivery's tokens", () => {
  test("the next process sends the kept token without loading the identity; forget removes it", async () => {
    const { config, file } = thingFolder("next-process");
    let loads = 0;
    const load = async () => (loads++, identity());
    const first = await new ThingTokens(undefined, new TokenFile(config)).current(load);
    expect(first.reused).toBe(false);
    expect(loads).toBe(1);
    const next = new ThingTokens(undefined, new TokenFile(config));
    expect(next.hasKept()).toBe(true);
    const again = await next.current(load);
    expect(again).toEqual({ ...first, reused: true });
    expect(loads).toBe(1);
    next.forget();
    expect(() => statSync(file)).toThrow();
    expect(new ThingTokens(undefined, new TokenFile(config)).hasKept()).toBe(false);
  });

  test("a kept token the hub refuses (401) is signed anew and sent once more at once; a fresh token refused is not", async () => {
    const seen: string[] = [];
    let refuse = (_token: string) => true;
    const receiver = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request) => {
        const token = request.headers.get("authorization")!.replace(/^Bearer /, "");
        seen.push(token);
        return new Response("{}", { status: refuse(token) ? 401 : 200, headers: { Date: new Date().toUTCString() } });
      },
    });
    try {
      const { config } = thingFolder("refused", `http://127.0.0.1:${receiver.port}`);
      const clock = new HubClock(createLogger({ write: () => {} }));
      const entry = { message_id: "0190a0b0-0000-7000-8000-000000000001", body: "{}" };
      const load = async () => identity();
      // a token kept from a hub that no longer takes it (restored from an older backup)
      new TokenFile(config).write(
        { token: "kept.token.value", offsetMs: 0, caPem: "-----BEGIN CERTIFICATE-----" },
        Date.now(),
        new TokenFile(config).fingerprint(),
      );
      refuse = (token) => token === "kept.token.value";
      const tokens = new ThingTokens(clock, new TokenFile(config));
      const outcome = await deliverHttp(entry, { config, identity: load, clock, tokens }, undefined);
      expect(outcome.kind).toBe("sent");
      expect(seen).toHaveLength(2);
      expect(seen[0]).toBe("kept.token.value");
      expect(new TokenFile(config).read()?.token).toBe(seen[1]);

      // a kept token refused and keys that no longer load: nothing more was sent, so not "may have arrived" (attack round 31, F2)
      seen.length = 0;
      new TokenFile(config).write(
        { token: "kept.token.value", offsetMs: 0, caPem: "-----BEGIN CERTIFICATE-----" },
        Date.now(),
        new TokenFile(config).fingerprint(),
      );
      refuse = () => true;
      const broken = async (): Promise<ThingIdentity> => {
        throw new Error("the private key does not fit the certificate");
      };
      const unsigned = await deliverHttp(entry, { config, identity: broken, clock, tokens: new ThingTokens(clock, new TokenFile(config)) }, undefined);
      expect(unsigned).toEqual({ kind: "retry", error: "the private key does not fit the certificate" });
      expect(seen).toEqual(["kept.token.value"]);

      // a newly signed token refused (a revoked thing): one request, the outcome a retry
      seen.length = 0;
      refuse = () => true;
      const revoked = await deliverHttp(entry, { config, identity: load, clock, tokens: new ThingTokens(clock) }, undefined);
      expect(revoked.kind).toBe("retry");
      expect(seen).toHaveLength(1);
    } finally {
      receiver.stop(true);
    }
  });
});
