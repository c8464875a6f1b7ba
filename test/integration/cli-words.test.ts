/**
 * What the command line says, through the compiled binary: the names and hints a new user reads
 * (issue "names and hints that mislead"): the version, the exit code of a file that is not there,
 * the flags an older `uninstall-service` line passes, where `hub init` says the broker listens,
 * the port `mosquitto-config` tells the hub, hub.yml keys the hub does not know, and why a
 * one-shot MQTT connection of a revoked thing ended.
 */
import { afterAll, expect, test } from "bun:test";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commitSha, packageVersion } from "../../scripts/build.ts";
import { binaryPath, run } from "../support/binary.ts";
import { makeHubFixture } from "../support/hub-fixture.ts";
import { tally } from "../support/tally.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-cli-words-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("--version names flashlex, its commit and the runtime inside (not Node's compatibility number)", async () => {
  const result = await run(["--version"]);
  expect(result.code).toBe(0);
  const commit = process.env.FLASHLEX_EXPECT_COMMIT || commitSha();
  expect(result.stdout.trim()).toBe(`flashlex ${await packageVersion()} (${commit}), Bun ${Bun.version}, linux-${process.arch}`);
});

test("collect and hub send --file that is not there, or a directory, is a usage error (64) naming the flag, not an I/O error", async () => {
  const hub = await makeHubFixture(join(work, "file"));
  const thing = await hub.createThing("filer");
  const socketFile = join(work, "a.sock");
  const listening = createServer().listen(socketFile);
  await new Promise((resolve) => listening.once("listening", resolve));
  const cases = [
    { args: ["collect", ...thing.flags, "--file", join(work, "missing.json")], says: `--file ${join(work, "missing.json")}: no such file` },
    { args: ["collect", ...thing.flags, "--file", work], says: `--file ${work}: a directory, not a file` },
    // -f, as hub send has it (new-user pass 20, F7: it was "Unknown option `-f`")
    { args: ["collect", ...thing.flags, "-f", join(work, "missing.json")], says: `--file ${join(work, "missing.json")}: no such file` },
    { args: ["hub", "send", thing.name, "--dir", hub.dir, "--file", work], says: `--file ${work}: a directory, not a file` },
    // a Unix socket (the hub's own hub.sock): the path names no file; it was 74, "cannot read (ENXIO)"
    { args: ["collect", ...thing.flags, "--file", socketFile], says: `--file ${socketFile}: a socket, not a file` },
    { args: ["hub", "send", thing.name, "--dir", hub.dir, "--file", socketFile], says: `--file ${socketFile}: a socket, not a file` },
  ];
  for (const c of cases) {
    const result = await run(c.args);
    expect({ code: result.code, stderr: result.stderr.trim() }).toEqual({ code: 64, stderr: `flashlex: ${c.says}` });
  }
  listening.close();
  tally("badInputs", cases.length);
});

test("--file - is stdin, as without --file (it was 'value is missing', 64); a bad document read that way is named stdin", async () => {
  const hub = await makeHubFixture(join(work, "dash"));
  const thing = await hub.createThing("dasher");
  // no serve and no API: queued (69) means it was read and taken
  const queued = await run(["collect", ...thing.flags, "--file", "-"], { input: '{"dash":true}' });
  expect({ code: queued.code, stderr: queued.stderr }).toMatchObject({ code: 69 });
  const bad = await run(["collect", ...thing.flags, "--file", "-"], { input: "{not json" });
  expect(bad.code).toBe(65);
  expect(bad.stderr).toStartWith("flashlex: stdin");
  const sent = await run(["hub", "send", thing.name, "--dir", hub.dir, "--file", "-"], { input: "{not json" });
  expect(sent.code).toBe(65);
  expect(sent.stderr).toStartWith("flashlex: stdin");
});

test("collect --via mqtt run several at once with serve stopped take turns on the thing's session: each is delivered, none is pushed off", async () => {
  const hub = await makeHubFixture(join(work, "turns"));
  const thing = await hub.createThing("turns");
  const serving = await hub.serve();
  try {
    // before, each took the thing's client id from the one before: one waited 120 s for its PUBACK, then 69
    const results = await Promise.all(
      [1, 2, 3, 4].map((n) => run(["collect", ...thing.flags, "--via", "mqtt", "--json"], { input: `{"n":${n}}`, timeoutMs: 60_000 })),
    );
    expect(results.map((r) => [r.code, JSON.parse(r.stdout || "{}").outcome])).toStrictEqual([
      [0, "sent"],
      [0, "sent"],
      [0, "sent"],
      [0, "sent"],
    ]);
    tally("attacks");
    expect(serving.output()).not.toContain("identity_contested");
  } finally {
    await serving.stop();
  }
}, 90_000);

test("a word past what a command takes, or one missing, names the command and what it takes (cac said only 'Unused args' or its usage line)", async () => {
  const cases = [
    { args: ["hub", "update", "--to", "2.0.0", "pump-1"], says: 'hub update takes no arguments: a value goes after its flag, so "pump-1" is one too many' },
    { args: ["hub", "thing", "revoke", "pump-1", "pump-2"], says: 'hub thing revoke takes <thing>, one per run, so "pump-2" is one too many' },
    { args: ["bootstrap", "now", "please"], says: 'bootstrap takes no arguments: a value goes after its flag, so "now" is one too many (of 2)' },
  ];
  for (const c of cases) {
    const result = await run(c.args);
    expect({ code: result.code, stderr: result.stderr.trim() }).toEqual({
      code: 64,
      stderr: `flashlex: ${c.says}; see flashlex ${c.args.slice(0, c.args[0] === "hub" ? (c.args[1] === "thing" ? 3 : 2) : 1).join(" ")} --help`,
    });
  }
  tally("badInputs", cases.length);
  // and one missing: the command's own words say what goes there (cac named only its usage line)
  const bare = await run(["messages"]);
  expect({ code: bare.code, stderr: bare.stderr.trim() }).toEqual({
    code: 64,
    stderr:
      "flashlex: messages needs <action>: What arrived: `list` (--json, --follow, --all, --acked, --topic, --since, --limit), `ack ID...`, `delete ID...`; see flashlex messages --help",
  });
  // one or more: said in words, not as cac's placeholder (new-user pass 20, F6)
  const send = await run(["hub", "send", "--dir", work]);
  expect(send.code).toBe(64);
  expect(send.stderr.trim()).toStartWith("flashlex: hub send needs one or more things: ");
});

test("a refused thing name, export type or taken name says what was given and what to do (new-user pass 20, F6; attack round 24, F6)", async () => {
  const hub = await makeHubFixture(join(work, "names"));
  const long = "n".repeat(300);
  for (const [args, code, said] of [
    [["hub", "thing", "create", "my.thing", "--dir", hub.dir], 65, `"my.thing": a thing name is 1 to 40 letters, digits, '-' or '_', not starting with '-'`],
    // without -o the default <prefix>-<name>.zip was looked at first: 74, the path too long
    [
      ["hub", "thing", "create", long, "--dir", hub.dir],
      65,
      `"${"n".repeat(48)}…": a thing name is 1 to 40 letters, digits, '-' or '_', not starting with '-'`,
    ],
    [["hub", "export", "some-thing", "--type", "egres", "--dir", hub.dir, "-o", join(work, "x.zip")], 64, `--type must be egress or ingress, not "egres"`],
    // a long value is quoted cut, wherever a refusal quotes it (it was echoed whole: verify pass 25, F3)
    [
      ["hub", "export", "some-thing", "--type", long, "--dir", hub.dir, "-o", join(work, "x.zip")],
      64,
      `--type must be egress or ingress, not "${"n".repeat(48)}…"`,
    ],
    [
      ["hub", "export", "some-thing", "--since", long, "--dir", hub.dir, "-o", join(work, "x.zip")],
      64,
      `--since must be Unix seconds or an ISO date (2024-01-31 or 2024-01-31T12:00:00Z), not "${"n".repeat(48)}…"`,
    ],
    [
      ["hub", "thing", "delete", long, "--dir", hub.dir],
      65,
      `no thing "${"n".repeat(48)}…" (give its name, typed name or id; see \`flashlex hub thing list\`)`,
    ],
  ] as const) {
    const result = await run([...args], { cwd: work });
    expect({ code: result.code, stderr: result.stderr.trim() }).toEqual({ code, stderr: `flashlex: ${said}` });
  }
  // and everywhere else a refusal quotes a value (new-user pass 21, F3): one short line, the value cut
  const huge = "n".repeat(5000);
  for (const args of [
    ["hub", "init", "--dir", join(work, "huge"), "--name", huge],
    ["hub", "init", "--dir", join(work, "huge"), "--api-url", `http://${huge}:8080`],
    ["hub", "enroll-token", "create", "--dir", hub.dir, "--name-prefix", huge],
    ["hub", "enroll-token", "create", "--dir", hub.dir, "--expires", huge],
    ["hub", "enroll-token", "revoke", huge, "--dir", hub.dir],
    [huge],
    ["hub", huge],
    ["hub", "thing", "list", huge, "--dir", hub.dir],
    // a dash word with an h: neither quoted whole nor spelt out letter by letter (20,208 characters: verify pass 26, F2)
    ["collect", `-h${huge}`],
    ["collect", "--name", `-h${huge}`],
  ]) {
    const result = await run(args);
    const shown = args.map((a) => (a.length > 100 ? "<5,000 n>" : a)).join(" ");
    expect({ shown, code: [64, 65].includes(result.code), short: result.stderr.length < 400, cut: /n{46,48}…"/.test(result.stderr) }).toStrictEqual({
      shown,
      code: true,
      short: true,
      cut: true,
    });
  }
  const thing = await hub.createThing("taken");
  const again = await run(["hub", "thing", "create", "taken", "--dir", hub.dir, "-o", join(work, "again.zip")]);
  expect(again.code).toBe(65);
  expect(again.stderr.trim()).toBe(
    `flashlex: a thing named ${thing.name} already exists: pick another name, or \`flashlex hub thing delete ${thing.name}\` first (its messages go with it)`,
  );
});

test("uninstall-service takes the thing flags older lines pass, and says they are not needed", async () => {
  const result = await run(["uninstall-service", "-c", "config.yml", "--dry-run"]);
  expect(result.code).toBe(0);
  const help = (await run(["uninstall-service", "--help"])).stdout;
  expect(help).toContain("not needed");
  expect(help).not.toContain("required");
});

test("a FLASHLEX_LOG_LEVEL or FLASHLEX_CRL_VALIDITY_SECONDS the product cannot read is 78 on one line naming it, before the command does anything (it was info, or a year, without a word)", async () => {
  const home = join(work, "env-home");
  const cases: { env: Record<string, string>; says: string }[] = [
    { env: { FLASHLEX_LOG_LEVEL: "bogus" }, says: 'flashlex: $FLASHLEX_LOG_LEVEL is "bogus"; it takes debug, info, warn, error (unset: info)' },
    { env: { FLASHLEX_LOG_LEVEL: "DEBUG" }, says: 'flashlex: $FLASHLEX_LOG_LEVEL is "DEBUG"; it takes debug, info, warn, error (unset: info)' },
    {
      env: { FLASHLEX_CRL_VALIDITY_SECONDS: "soon" },
      says: 'flashlex: $FLASHLEX_CRL_VALIDITY_SECONDS is "soon"; it takes a whole number of seconds, at least 3 and at most 3153600000 (unset: 31536000, a year)',
    },
  ];
  for (const c of cases) {
    for (const args of [["hub", "init", "--dir", home], ["serve", "-c", join(work, "no-config.yml")], ["version"]]) {
      const result = await run(args, { env: c.env });
      expect({ args, env: c.env, code: result.code, stderr: result.stderr.trim(), stdout: result.stdout }).toEqual({
        args,
        env: c.env,
        code: 78,
        stderr: c.says,
        stdout: "",
      });
      expect(existsSync(home)).toBe(false);
    }
  }
  tally("badInputs", cases.length * 3);
  // --help still answers, and an empty value is unset, as a shell leaves a cleared variable
  expect((await run(["serve", "--help"], { env: { FLASHLEX_LOG_LEVEL: "bogus" } })).code).toBe(0);
  expect((await run(["version"], { env: { FLASHLEX_LOG_LEVEL: "", FLASHLEX_CRL_VALIDITY_SECONDS: "" } })).code).toBe(0);
});

test("a flag that takes one value, given twice, is a usage error (64) naming it, whatever the command (the last, or with -o a --output b the first, was taken without a word); --name repeats", async () => {
  const hub = await makeHubFixture(join(work, "twice"));
  const cases: [string[], string][] = [
    [["hub", "thing", "create", "x", "--dir", hub.dir, "--dir", join(work, "other")], "--dir is given twice"],
    [
      ["hub", "thing", "create", "x", "--dir", hub.dir, "--output", join(work, "a.zip"), "-o", join(work, "b.zip")],
      "--output is given twice (as --output and -o)",
    ],
    [
      ["hub", "thing", "create", "x", "--dir", hub.dir, "-o", join(work, "a.zip"), "--output", join(work, "b.zip")],
      "--output is given twice (as -o and --output)",
    ],
    [["messages", "list", "-c", "a.yml", "--since", "1", "--since=2"], "--since is given twice"],
    [["hub", "--dir", hub.dir, "thing", "list", "--dir", hub.dir], "--dir is given twice"],
    // a short flag with = (an array reached serve and bootstrap: 70) and mri's camelCase spelling (the last won)
    [["serve", "-d=data", "-d", "data"], "--data is given twice"],
    [["bootstrap", "-c=config.yml", "-c", "config.yml"], "--config is given twice"],
    [
      ["hub", "init", "--dir", join(work, "camel"), "--api-url", "http://127.0.0.1:1", "--apiUrl", "http://127.0.0.1:2"],
      "--api-url is given twice (as --api-url and --apiUrl)",
    ],
  ];
  for (const [args, says] of cases) {
    const result = await run(args);
    expect({ args, code: result.code, stderr: result.stderr.trim() }).toEqual({
      args,
      code: 64,
      stderr: `flashlex: ${says}; it takes one value: give it once`,
    });
  }
  tally("badInputs", cases.length);
  // a dotted flag: mri made an object of it (a home named "[object Object]"; with --dir too, its own TypeError: 70)
  for (const args of [
    ["hub", "thing", "list", "--dir.x", "y"],
    ["hub", "thing", "list", "--dir", hub.dir, "--dir.x", "y"],
  ]) {
    const result = await run(args);
    tally("badInputs");
    expect({ args, code: result.code, stderr: result.stderr.trim() }).toEqual({
      args,
      code: 64,
      stderr: 'flashlex: "--dir.x" is no flag: a flag\'s name has no dot (a value goes after = or a space)',
    });
  }
  // nothing was made by the refused creates
  expect(existsSync(join(work, "a.zip")) || existsSync(join(work, "b.zip"))).toBe(false);
  expect((await run(["hub", "thing", "list", "--dir", hub.dir, "--json"])).stdout.trim()).toBe("[]");
  // documented as repeatable: each one counts
  const init = await run(["hub", "init", "--dir", join(work, "twice-names"), "--name", "a.example", "--name", "b.example", "--json"]);
  expect(init.code).toBe(0);
  expect(JSON.parse(init.stdout).names).toEqual(["a.example", "b.example"]);
});

test("--help prints one help, for the command it follows, and exits 0", async () => {
  for (const words of [[], ["messages"], ["collect"], ["serve"], ["hub"], ["hub", "thing", "create"], ["version"]]) {
    const result = await run([...words, "--help"]);
    expect({ words, code: result.code, usages: result.stdout.match(/^Usage:$/gm)?.length }).toEqual({ words, code: 0, usages: 1 });
    expect(result.stdout).toContain(`$ flashlex ${words.join(" ")}`.trimEnd());
  }
});

test("a word a group has no command for is named as an unknown command, also with flags after it (not as an unknown --dir)", async () => {
  for (const [args, said] of [
    [["hub", "thing", "frobnicate", "x", "--dir", work], 'unknown hub command "thing frobnicate x"'],
    [["hub", "frob", "--dir", work], 'unknown hub command "frob"'],
    // with --help as well: the same one line and 64, not the whole listing and 0
    [["hub", "updates", "--help"], 'unknown hub command "updates"; did you mean flashlex hub update?'],
    [["hub", "thing", "frob", "-h"], 'unknown hub command "thing frob"'],
  ] as const) {
    const result = await run([...args]);
    expect({ args, code: result.code }).toEqual({ args, code: 64 });
    expect(result.stderr.trim()).toBe(`flashlex: ${said}; see flashlex hub --help`);
    expect(result.stdout).toBe("");
  }
  const top = await run(["nosuch", "--help"]);
  expect({ code: top.code, stderr: top.stderr.trim(), stdout: top.stdout }).toEqual({
    code: 64,
    stderr: 'flashlex: unknown command "nosuch"; see flashlex --help',
    stdout: "",
  });
  // words that start commands (`hub thing`): with --help, those commands and only those
  for (const args of [
    ["hub", "thing", "--help"],
    ["hub", "enroll-token", "--help"],
  ]) {
    const result = await run(args);
    const listed = [...result.stdout.matchAll(/^ {2}(hub [a-z-]+ [a-z]+)/gm)].map((m) => m[1]!.split(" ").slice(0, 2).join(" "));
    expect({ args, code: result.code, groups: [...new Set(listed)] }).toStrictEqual({ args, code: 0, groups: [`hub ${args[1]}`] });
  }
  // without: one line naming them, on stderr, as `messages` without an action (it was the listing,
  // on stdout, with 64: new-user pass 21, F10); with a flag of its commands too, not "Unknown
  // option `--dir`" (attack round 24, F5)
  for (const args of [
    ["hub", "thing"],
    ["hub", "thing", "--dir", work],
  ]) {
    const result = await run(args);
    expect({ args, code: result.code, stderr: result.stderr, stdout: result.stdout }).toStrictEqual({
      args,
      code: 64,
      stderr: "flashlex: hub thing needs a command: create, list, dist, revoke, delete, rotate; see flashlex hub thing --help\n",
      stdout: "",
    });
  }
  const hub = await run(["hub", "--dir", work]);
  expect([hub.code, hub.stdout]).toStrictEqual([64, ""]);
  expect(hub.stderr).toStartWith("flashlex: hub needs a command: init, thing, ");
});

test("a command, group word, action or flag two letters off (or in capitals) is named with the one likely meant (new-user pass 20, F5; attack round 24, F5)", async () => {
  for (const [args, said] of [
    [["colect"], 'unknown command "colect"; did you mean flashlex collect?; see flashlex --help'],
    [["hub", "int", "--dir", work], 'unknown hub command "int"; did you mean flashlex hub init?; see flashlex hub --help'],
    [["hub", "thing", "lst", "--dir", work], 'unknown hub command "thing lst"; did you mean flashlex hub thing list?; see flashlex hub --help'],
    // a group's word off: the whole command it leads to, not the group alone, which runs nothing (new-user pass 21, F9)
    [["hub", "thng", "list", "--dir", work], 'unknown hub command "thng list"; did you mean flashlex hub thing list?; see flashlex hub --help'],
    [["hub", "toke", "rotate", "--dir", work], 'unknown hub command "toke rotate"; did you mean flashlex hub token rotate?; see flashlex hub --help'],
    [["hbu", "thing", "lst"], 'unknown command "hbu"; did you mean flashlex hub thing list?; see flashlex --help'],
    // in capitals, words and actions too, and cac's own flags (new-user pass 22, F4: only flags and one-letter-off words got one)
    [["HUB", "init"], 'unknown command "HUB"; did you mean flashlex hub init?; see flashlex --help'],
    [["messages", "LIST"], 'messages: unknown action "LIST" (list, ack, delete); did you mean flashlex messages list?'],
    [["--HELP"], "Unknown option `--HELP`; did you mean --help?"],
    [["collect", "--HELP"], "Unknown option `--HELP`; did you mean --help?"],
    // a group's too, and the short ones (verify pass 27, F5: "hub needs a command", and no hint)
    [["hub", "--HELP"], "Unknown option `--HELP`; did you mean --help?"],
    [["hub", "thing", "--Version"], "Unknown option `--Version`; did you mean --version?"],
    [["-H"], "Unknown option `-H`; did you mean -h?"],
    [["-V"], "Unknown option `-V`; did you mean -v?"],
    // a command's own command after a command that runs (`hub update` and `hub update status`)
    [
      ["hub", "update", "Status"],
      'hub update takes no arguments: a value goes after its flag, so "Status" is one too many; did you mean flashlex hub update status?; see flashlex hub update --help',
    ],
    [["messages", "lst"], 'messages: unknown action "lst" (list, ack, delete); did you mean flashlex messages list?'],
    [["outbox", "dorp", "x"], 'outbox: unknown action "dorp" (list, retry, resend, drop); did you mean flashlex outbox drop?'],
    [["hub", "thing", "list", "--Dir", work], "Unknown option `--Dir`; did you mean --dir?"],
    [["hub", "thing", "list", "--DIR", work], "Unknown option `--DIR`; did you mean --dir?"],
    // a flag with its value between a command's words: said so, not "did you mean" the same words (verify pass 25, F1)
    [
      ["hub", "--DIR", work, "thing", "list"],
      '"hub thing list" is a command, but a flag came between its words: write the words first, then the flags; see flashlex hub thing list --help',
    ],
    // a flag before any command: named, not the whole listing with 64 and no word of why; with
    // nothing near, where the flags are listed (new-user pass 22, F5)
    [["--nosuch"], "Unknown option `--nosuch`; see flashlex --help"],
    [["-x"], "Unknown option `-x`; see flashlex --help"],
    [["hub", "thing", "list", "--nosuch"], "Unknown option `--nosuch`; see flashlex hub thing list --help"],
    // whatever letters it has (verify pass 28, F9)
    [["hub", "thing", "list", "--é-x"], "Unknown option `--é-x`; see flashlex hub thing list --help"],
    // nothing near: no guess
    [["zzzzzz"], 'unknown command "zzzzzz"; see flashlex --help'],
  ] as const) {
    const result = await run([...args]);
    expect({ args, code: result.code, stderr: result.stderr.trim(), stdout: result.stdout }).toEqual({
      args,
      code: 64,
      stderr: `flashlex: ${said}`,
      stdout: "",
    });
  }
  // --help and --version still work beside an unknown flag, as a command's --help does
  for (const args of [
    ["--help", "--nosuch"],
    ["--version", "--nosuch"],
    ["collect", "--help", "--nosuch"],
  ])
    expect([args, (await run(args)).code]).toEqual([args, 0]);
  // after a command, --version (-v) prints the version and does nothing else, as --help prints
  // help: the command ran, the flag unread (a collect sent its message; hub init made a hub)
  const version = (await run(["--version"])).stdout;
  const home = join(work, "not-made");
  for (const args of [
    ["hub", "init", "--dir", home, "--version"],
    ["hub", "init", "-v", "--dir", home],
    ["collect", "-c", join(work, "no-config.yml"), "--version"],
    ["collect", "--version", "--nosuch"],
    // a group's too, as `hub --version` (it was "needs a command": verify pass 26, F5)
    ["hub", "thing", "--version"],
    ["hub", "enroll-token", "-v"],
  ]) {
    const result = await run(args, { input: '{"sent": true}' });
    expect({ args, code: result.code, stdout: result.stdout, stderr: result.stderr }).toEqual({ args, code: 0, stdout: version, stderr: "" });
  }
  expect(existsSync(home)).toBe(false);
  // a word right after it was meant as a value: it printed the version, exited 0 and rolled nothing out (attack round 26, F12)
  const valued = await run(["hub", "update", "--version", "1.2.3", "--all", "--dir", home]);
  expect({ code: valued.code, stdout: valued.stdout, stderr: valued.stderr }).toEqual({
    code: 64,
    stdout: "",
    stderr: 'flashlex: --version prints flashlex\'s version and takes no value (it was given "1.2.3"); see flashlex hub update --help\n',
  });
  // a group's too (verify pass 27, F4)
  const grouped = await run(["hub", "--version", "foo"]);
  expect([grouped.code, grouped.stdout]).toEqual([64, ""]);
});

test("hub init says the broker listens on every interface; mosquitto-config tells the hub the port it wrote and the CRL it added to hub.yml", async () => {
  const dir = join(work, "init");
  const init = await run(["hub", "init", "--dir", dir]);
  expect(init.code).toBe(0);
  expect(init.stdout).toContain("listening on 0.0.0.0:8883, every interface");
  // an IPv6 broker host is printed as an address to copy: in brackets before the port
  const v6 = await run(["hub", "init", "--dir", join(work, "init-v6"), "--name", "2001:db8::1"]);
  expect(v6.stdout).toContain("broker:     [2001:db8::1]:8883 (certificate for 2001:db8::1;");
  // the note names only what is missing for things elsewhere (it asked for --api-url when given: new-user pass 21, F16)
  const note = (stdout: string) => /^note: .*$/m.exec(stdout)?.[0];
  // in hub.yml's words: the hub exists by then, and init's flags would need a new home (new-user pass 23, F1/F13)
  const brokerNote = "broker.host and broker.names (hub serve issues the broker certificate for them at its start)";
  expect([note(init.stdout), note(v6.stdout)]).toStrictEqual([
    `note: things on other machines need an address they can reach: put it (HOST) in hub.yml ${brokerNote}; api.publicUrl (http://HOST:8080) and api.host (0.0.0.0)`,
    "note: things on other machines need an address they can reach: put it (HOST) in hub.yml api.publicUrl (http://HOST:8080) and api.host (0.0.0.0)",
  ]);
  const apiOnly = await run(["hub", "init", "--dir", join(work, "init-api"), "--api-url", "http://hub.lan:8080"]);
  expect(note(apiOnly.stdout)).toBe(`note: things on other machines need an address they can reach: put it (HOST) in hub.yml ${brokerNote}`);
  // an --api-url given, but on loopback, is still one things elsewhere cannot reach (verify pass 26, F4); its port is kept
  const loopback = await run(["hub", "init", "--dir", join(work, "init-lo"), "--name", "hub.lan", "--api-url", "http://127.0.0.1:34101"]);
  expect(note(loopback.stdout)).toBe(
    "note: things on other machines need an address they can reach: put it (HOST) in hub.yml api.publicUrl (http://HOST:34101) and api.host (0.0.0.0)",
  );
  const out = join(work, "mosquitto's files");
  const persistence = join(work, "mosquitto-persist", "db");
  const config = await run(["hub", "mosquitto-config", "--dir", dir, "--out", out, "--port", "18883", "--persistence", persistence]);
  expect(config.code).toBe(0);
  // the persistence directory is made (Mosquitto would fail at its first save), and the hints are commands to copy
  expect(statSync(persistence).isDirectory()).toBe(true);
  expect(config.stdout).toContain(`sudo chown -R mosquitto: ${persistence}`);
  // the steps in their order, numbered: the chowns before Mosquitto starts (it could not read its key), the hub stopped first
  const next = config.stdout.slice(config.stdout.indexOf("next:\n"));
  expect(
    next
      .split("\n")
      .filter((l) => /^ {2}\d\. /.test(l))
      .map((l) => l.slice(5, 30)),
  ).toEqual(["sudo chown root:mosquitto", "sudo chown -R mosquitto: ", "sudo chown -R mosquitto: ", "stop a running flashlex h", "flashlex hub serve --dir "]);
  expect(config.stdout).toContain(`then: mosquitto -c '${join(work, "mosquitto'\\''s files", "mosquitto.conf")}'`);
  // the next step names this hub home (a copied `hub serve` ran against ~/.flashlex-hub), and hub.yml
  // points a plain `hub serve` at the Mosquitto written for (as a systemd unit runs it)
  expect(config.stdout).toContain(`5. flashlex hub serve --dir ${dir}`);
  expect(config.stdout).toContain("hub.yml now points hub serve at mqtts://localhost:18883 (broker.external");
  expect(config.stdout).toContain("things are told port 8883");
  // it says what it changed in hub.yml, and the change is there
  expect(config.stdout).toContain(`hub.yml now lists ${join(out, "crl.pem")} in broker.crlFiles`);
  const settings = readFileSync(join(dir, "hub.yml"), "utf8");
  expect(settings).toContain(join(out, "crl.pem"));
  expect(settings).toContain("external: mqtts://localhost:18883");
  // a revoke then says what shuts the thing out on that broker (it named the embedded one, and --broker)
  expect((await run(["hub", "thing", "create", "gone", "--dir", dir, "--output", join(work, "gone.zip")])).code).toBe(0);
  const revoked = await run(["hub", "thing", "revoke", "gone", "--dir", dir]);
  expect(revoked.code).toBe(0);
  expect(revoked.stdout).toContain("has Mosquitto's dynamic security plugin disconnect it within a few seconds");
  if (process.getuid?.() === 0) {
    // run again after the operator's `chown root:mosquitto` (nogroup standing in): the key stays readable to that group
    chownSync(join(out, "broker-key.pem"), 0, 65534);
    expect((await run(["hub", "mosquitto-config", "--dir", dir, "--out", out, "--port", "18883"])).code).toBe(0);
    expect([statSync(join(out, "broker-key.pem")).gid, statSync(join(out, "broker-key.pem")).mode & 0o777]).toEqual([65534, 0o640]);
  }
  // a relative --out is made absolute in what the broker reads, for both brokers
  for (const broker of ["mosquitto-config", "rabbitmq-config"]) {
    const written = await run(["hub", broker, "--dir", dir, "--out", `relative-${broker}`], { cwd: work });
    expect({ broker, code: written.code }).toEqual({ broker, code: 0 });
    const config = broker === "mosquitto-config" ? "mosquitto.conf" : "node1/rabbitmq.conf";
    expect(readFileSync(join(work, `relative-${broker}`, config), "utf8")).toContain(`${join(work, `relative-${broker}`)}/`);
  }
});

test("a hub.yml key the hub does not know is a warning naming it; a revoked thing's one-shot connect says why it ended", async () => {
  const hub = await makeHubFixture(join(work, "unknown"));
  const file = join(hub.dir, "hub.yml");
  writeFileSync(file, readFileSync(file, "utf8").replace("hub:\n", "hub:\n  colour: blue\n"));
  const thing = await hub.createThing("revoked");
  const hubProcess = await hub.serve();
  try {
    expect(hubProcess.output()).toMatch(/WARN +config\.unknown_key [^\n]*key=hub\.colour/);
    await hub.flashlex(["hub", "thing", "revoke", thing.name, "--dir", hub.dir]);
    const result = await run(["collect", ...thing.flags, "--via", "mqtt", "--json"], { input: '{"after":"revocation"}' });
    tally("attacks");
    expect(result.code).toBe(69);
    expect(JSON.parse(result.stdout).error).toContain("the broker refused this thing (not authorized): it may be revoked, or unknown to this hub (CONNACK 5)");
  } finally {
    expect(await hubProcess.stop()).toBe(0);
  }
});

test("hub send reaches its own hub and nothing else: another server on the API's port gets no request (and no token)", async () => {
  const hub = await makeHubFixture(join(work, "impostor"));
  const thing = await hub.createThing("target");
  const seen: string[] = [];
  const impostor = Bun.serve({
    hostname: "127.0.0.1",
    port: hub.apiPort,
    fetch: (request) => (seen.push(`${request.method} ${new URL(request.url).pathname} ${request.headers.get("authorization") ?? ""}`), new Response("{}")),
  });
  try {
    const result = await run(["hub", "send", thing.name, "--dir", hub.dir], { input: '{"text":"for my hub only"}' });
    tally("attacks");
    expect(result.code).toBe(69);
    expect(result.stderr).toContain(`the hub is not running for ${hub.dir}`);
    expect(seen).toEqual([]);
  } finally {
    impostor.stop(true);
  }
  // with its hub running, the same command works; a second `hub serve` on that home is refused
  const hubProcess = await hub.serve();
  try {
    expect((await run(["hub", "send", thing.name, "--dir", hub.dir], { input: '{"text":"now"}' })).code).toBe(0);
    // after `--` every word is a thing, the first one included (cac checked its required
    // arguments before it looked past `--`: "missing required args")
    expect((await run(["hub", "send", "--dir", hub.dir, "--", thing.name], { input: '{"text":"after --"}' })).code).toBe(0);
    const dashed = await run(["hub", "send", "--dir", hub.dir, "--", "-5"], { input: '{"text":"to -5"}' });
    expect(dashed.code).toBe(65);
    expect(dashed.stderr).toContain('no thing "-5"');
    const second = await run(["hub", "serve", "--dir", hub.dir]);
    expect(second.code).toBe(75);
    expect(second.stderr).toContain("another `flashlex hub serve` runs with this hub home");
  } finally {
    expect(await hubProcess.stop()).toBe(0);
  }
});

test.skipIf(process.getuid?.() !== 0 || !Bun.which("setpriv"))(
  "mosquitto-config with a --dynsec-plugin this user may not look at (under mosquitto's own directory): done, with its steps (it was 77 after the files were written)",
  () => {
    const root = mkdtempSync(join(tmpdir(), "flashlex-plugin-"));
    try {
      const closed = join(root, "mosquitto-only");
      mkdirSync(closed, { mode: 0o700 });
      const home = join(root, "hub");
      mkdirSync(home);
      chownSync(root, 65534, 65534);
      chownSync(home, 65534, 65534);
      chownSync(closed, 0, 0);
      const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
      const runAs = (argv: string[]) => {
        const result = Bun.spawnSync([...asNobody, binaryPath(), ...argv], { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
        return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
      };
      expect(runAs(["hub", "init", "--dir", home]).code).toBe(0);
      const plugin = join(closed, "mosquitto_dynamic_security.so");
      const config = runAs(["hub", "mosquitto-config", "--dir", home, "--out", join(root, "mq"), "--port", "18884", "--dynsec-plugin", plugin]);
      expect({ code: config.code, stderr: config.stderr }).toEqual({ code: 0, stderr: "" });
      expect(config.stdout).not.toContain(`${plugin} is not on this machine`); // it cannot tell from here: no claim either way
      expect(config.stdout).toContain("next:\n");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

test("a failure's stderr line stays one printable line whatever it quotes: a newline, CR or terminal escape in a path or a link target is shown escaped (they reached the terminal raw)", async () => {
  const base = mkdtempSync(join(work, "escapes-"));
  symlinkSync("/nonexist\n\u001b[2Jboom", join(base, "dl"));
  for (const args of [
    ["messages", "list", "-c", join(base, "a\nb.yml")],
    ["messages", "list", "-c", join(base, "a\rb.yml")],
    ["hub", "thing", "list", "--dir", join(base, "x\u001b[31my")],
    ["hub", "init", "--dir", join(base, "dl")],
  ]) {
    const result = await run(args);
    tally("badInputs");
    expect({ args, code: result.code === 64 || result.code === 78 }).toEqual({ args, code: true });
    expect(result.stderr.endsWith("\n") && result.stderr.split("\n").length).toBe(2);
    expect(result.stderr.includes("\r") || result.stderr.includes("\u001b")).toBe(false);
    expect(result.stderr).toMatch(/\\u00(0a|0d|1b)/);
  }
});

test("what hub init and hub thing create print on stdout keeps a path's newline or ESC escaped, and the next-step hint stays a command that runs ($'...')", async () => {
  const base = mkdtempSync(join(work, "escaped-out-"));
  const dir = join(base, "h\u001b[31mub\nx");
  const init = await run(["hub", "init", "--dir", dir]);
  expect(init.code).toBe(0);
  expect(init.stdout.includes("\u001b") || init.stdout.includes("ub\nx")).toBe(false);
  expect(init.stdout).toContain("hub created in ");
  const hint = init.stdout.match(/^next: flashlex hub serve --dir (\$'[^']*'); /m)?.[1];
  expect(hint).toBeDefined();
  expect(Bun.spawnSync(["bash", "-c", `printf %s ${hint}`]).stdout.toString()).toBe(dir);
  const zip = join(base, "t\u001b[2J\n.zip");
  const created = await run(["hub", "thing", "create", "t1", "--dir", dir, "-o", zip]);
  expect(created.code).toBe(0);
  expect(existsSync(zip)).toBe(true);
  expect(created.stdout.includes("\u001b")).toBe(false);
  expect(created.stdout).toContain("distribution: ");
  expect(created.stdout.split("\n").find((line) => line.startsWith("distribution: "))).toContain("\\u001b[2J\\u000a.zip");
});

test("a refusal quotes a 5,000-character value cut, never whole, whichever flag, word or variable it came in (verify pass 26, F2: it was echoed whole by ~20 refusals)", async () => {
  const hub = await makeHubFixture(join(work, "long"));
  const thing = await hub.createThing("longer");
  const long = "a".repeat(5000);
  const dir = ["--dir", hub.dir];
  const out = join(work, "long-out");
  const enrolWith = (flag: string, value: string) => [
    "enroll",
    ...["--hub", "http://127.0.0.1:1/dev/v1", "--token", "flxe_x", "--ca-fingerprint", "A".repeat(64)],
    ...[flag, value, "--dir", join(work, "long-enrol")],
  ];
  const cases: { args: string[]; env?: Record<string, string> }[] = [
    { args: ["messages", long, ...thing.flags] },
    { args: ["outbox", long, ...thing.flags] },
    { args: ["outbox", "retry", long, ...thing.flags] },
    { args: ["outbox", "drop", long, ...thing.flags] },
    { args: ["outbox", "list", "--state", long, ...thing.flags] },
    { args: ["collect", "--via", long, ...thing.flags] },
    { args: ["serve", "--metrics", long, ...thing.flags] },
    { args: ["install-service", "--user", long, "--dry-run", ...thing.flags] },
    { args: [`--${long}`] },
    { args: ["collect", `--${long}`, ...thing.flags] },
    // a flag with `_`, `/` or a letter outside ASCII: cac's message was not cut (attack round 26, F4)
    { args: ["bootstrap", `--x_${long}`, ...thing.flags] },
    { args: ["bootstrap", `--é${long}`, ...thing.flags] },
    { args: ["collect", `-h${long}`] },
    { args: ["collect", "--json", `-h${long}`] },
    { args: ["hub", "init", "--dir", join(work, "long-hub"), "--broker-host", long] },
    { args: ["hub", "init", "--dir", join(work, "long-hub"), "--env", long] },
    { args: ["hub", "thing", "create", "k", ...dir, "--key-type", long] },
    { args: ["hub", "serve", ...dir, "--broker", long] },
    { args: ["hub", "serve", ...dir, "--broker", `mqtts://${long}`] },
    { args: ["hub", "rabbitmq-config", ...dir, "--out", out, "--nodes", long] },
    { args: ["hub", "rabbitmq-config", ...dir, "--out", out, "--host", long] },
    { args: ["hub", "rabbitmq-config", ...dir, "--out", out, "--auth-host", long] },
    { args: ["hub", "update", ...dir, "--to", long, "--all"] },
    { args: ["hub", "update", ...dir, "--to", "1.0.0", "--all", "--batch", long] },
    { args: ["hub", "export", thing.name, ...dir, "--type", long] },
    { args: ["enroll", "--hub", long, "--token", "flxe_x", "--ca-fingerprint", "AA", "--dir", join(work, "long-enrol")] },
    { args: enrolWith("--name", long) },
    { args: enrolWith("--key-type", long) },
    { args: ["hub", "thing", "list", ...dir], env: { FLASHLEX_LOG_LEVEL: long } },
  ];
  for (const c of cases) {
    const result = await run(c.args, { env: c.env, timeoutMs: 20_000 });
    tally("badInputs");
    const shown = c.args.map((arg) => (arg.length > 60 ? `<${arg.length} chars>` : arg)).join(" ");
    // refused (a usage or configuration error, or unreachable), on one line that holds a cut of the value
    expect({ shown, code: [64, 65, 69, 78].includes(result.code) }).toEqual({ shown, code: true });
    const longest = Math.max(...`${result.stdout}\n${result.stderr}`.split("\n").map((line) => line.length));
    expect({ shown, longest: longest <= 400 }).toEqual({ shown, longest: true });
    expect({ shown, cut: `${result.stdout}${result.stderr}`.includes("a".repeat(49)) }).toEqual({ shown, cut: false });
  }
  expect(existsSync(join(work, "long-hub"))).toBe(false);
  expect(existsSync(out)).toBe(false);
  // the length check took no more than it had to: `_` in --auth-host (a Docker service name) still works (attack round 26, F6)
  const underscore = await run(["hub", "rabbitmq-config", ...dir, "--out", out, "--auth-host", "flashlex_hub"]);
  expect(underscore.code, underscore.stderr).toBe(0);
});

test.skipIf(!Bun.which("script"))(
  "collect at a terminal with nothing piped in says it reads stdin, until Ctrl-D; piped or from /dev/null it says nothing (new-user pass 22, F9: it waited without a word)",
  async () => {
    const hub = await makeHubFixture(join(work, "tty"));
    const thing = await hub.createThing("typist");
    const command = [binaryPath(), "collect", ...thing.flags].map((word) => `'${word}'`).join(" ");
    // script(1) runs it on a pty; its own stdin at end of file ends the pty's input (Ctrl-D)
    const atTerminal = Bun.spawnSync(["script", "-qec", command, "/dev/null"], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    expect(atTerminal.stdout.toString()).toContain(
      "flashlex: reading the JSON document from stdin: type it and end with Ctrl-D, or pipe it in, or give --file",
    );
    for (const input of [undefined, "{not json"]) {
      const result = await run(["collect", ...thing.flags], { input });
      expect({ code: result.code, hint: result.stderr.includes("reading the JSON document") }).toEqual({ code: 65, hint: false });
    }
  },
);
