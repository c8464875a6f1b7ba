import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { userLabel } from "../../src/shared/passwd.ts";
import { whyDenied } from "../../src/shared/why-denied.ts";

const isRoot = process.getuid?.() === 0 && Boolean(Bun.which("setpriv"));
const root = mkdtempSync(join(tmpdir(), "flashlex-why-denied-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What `body` (module code with whyDenied, toFlashlexError and mkdirSync in scope) prints, run as uid 65534. */
function asNobody(body: string): unknown {
  const script = `import { whyDenied } from ${JSON.stringify(join(import.meta.dir, "../../src/shared/why-denied.ts"))};
    import { toFlashlexError } from ${JSON.stringify(join(import.meta.dir, "../../src/shared/foreign-errors.ts"))};
    import { mkdirSync } from "node:fs";
    ${body}`;
  const result = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script], {
    encoding: "utf8",
    timeout: 20_000,
    cwd: "/",
  });
  expect(result.stderr).toBe("");
  return JSON.parse(result.stdout.trim());
}

test("root gets no reason: what refuses root is no owner or mode", () => {
  expect(whyDenied(join(root, "anything"))).toBeUndefined();
});

test.skipIf(!isRoot)("names the directory on the way, the file, or the directory to write in, with its owner and mode; through a link, where it leads", () => {
  chmodSync(root, 0o755);
  const closed = join(root, "closed");
  mkdirSync(closed, { mode: 0o700 });
  const open = join(root, "open");
  mkdirSync(open, { mode: 0o755 });
  writeFileSync(join(open, "root.key"), "", { mode: 0o600 });
  const mine = join(root, "mine");
  mkdirSync(mine, { mode: 0o755 });
  chownSync(mine, 65534, 65534);
  symlinkSync(join(closed, "data"), join(mine, "data"));
  // a data/ that is a link to a directory of root's: the link's own 0777 is not what refuses
  symlinkSync(closed, join(mine, "into-closed"));
  symlinkSync(open, join(mine, "into-open"));
  symlinkSync(join(mine, "loop-b"), join(mine, "loop-a"));
  symlinkSync(join(mine, "loop-a"), join(mine, "loop-b"));
  const me = userLabel(65534);
  const answers = asNobody(`console.log(JSON.stringify({
    onTheWay: whyDenied(${JSON.stringify(join(closed, "x", "y"))}),
    file: whyDenied(${JSON.stringify(join(open, "root.key"))}),
    writeIn: whyDenied(${JSON.stringify(join(open, "new.db"))}),
    ours: whyDenied(${JSON.stringify(join(mine, "new.db"))}) ?? null,
    link: whyDenied(${JSON.stringify(join(mine, "data"))}),
    linkOnTheWay: whyDenied(${JSON.stringify(join(mine, "into-closed", "serve.lock"))}),
    linkToWriteIn: whyDenied(${JSON.stringify(join(mine, "into-open", "serve.lock"))}),
    loop: whyDenied(${JSON.stringify(join(mine, "loop-a", "serve.lock"))}) ?? null,
    mkdir: (() => { try { mkdirSync(${JSON.stringify(join(mine, "data"))}); } catch (err) { const e = toFlashlexError(err); return { kind: e.kind, message: e.message }; } })(),
  }));`);
  expect(answers).toEqual({
    onTheWay: `${me} may not enter ${closed} (root's, mode 0700)`,
    file: `it is root's (mode 0600), and this command runs as ${me}`,
    writeIn: `${me} may not write in ${open} (root's, mode 0755)`,
    ours: null, // nothing in the way that an owner or a mode explains
    link: `it links to ${join(closed, "data")}: ${me} may not enter ${closed} (root's, mode 0700)`,
    linkOnTheWay: `${join(mine, "into-closed")} links to ${closed}: ${me} may not enter ${closed} (root's, mode 0700)`,
    linkToWriteIn: `${join(mine, "into-open")} links to ${open}: ${me} may not write in ${open} (root's, mode 0755)`,
    loop: null, // ELOOP's to say: it was "may not enter loop-a (mode 0777)"
    // a data/ link into a directory the user may not enter: was "already exists (EEXIST)", 74
    mkdir: {
      kind: "permission",
      message: `${join(mine, "data")}: a symbolic link to ${join(closed, "data")}, which this user may not reach: ${me} may not enter ${closed} (root's, mode 0700) (EACCES)`,
    },
  });
});
