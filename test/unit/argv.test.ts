/**
 * The command line around cac (src/cli/argv.ts): a flag that takes one value, given twice.
 */
import { describe, expect, test } from "bun:test";
import { refuseEmptyValues, refuseMisreadWords, refuseRepeatedFlags } from "../../src/cli/argv.ts";
import type { CommandSpec } from "../../src/cli/command.ts";

const spec: CommandSpec = {
  name: "hub thing create",
  args: "<name>",
  description: "test",
  options: [
    { flags: "--dir <dir>", description: "" },
    { flags: "-o, --output <file>", description: "" },
    { flags: "--since <when>", description: "" },
    { flags: "--name <name>", description: "", repeatable: true },
    { flags: "--json", description: "" },
  ],
};

const refused = (words: string[]) => {
  try {
    refuseRepeatedFlags(spec, words);
    return undefined;
  } catch (err) {
    return { kind: (err as { kind?: string }).kind, message: (err as Error).message };
  }
};

describe("refuseRepeatedFlags", () => {
  test("a one-value flag given twice, in any spelling, is a usage error naming it (it was the last one, or with -o a --output b the first)", () => {
    expect(refused(["hub", "thing", "create", "x", "--dir", "a", "--dir", "b"])).toEqual({
      kind: "usage",
      message: "--dir is given twice; it takes one value: give it once",
    });
    expect(refused(["--output", "a", "-o", "b"])?.message).toBe("--output is given twice (as --output and -o); it takes one value: give it once");
    expect(refused(["-o", "a", "--output=b"])?.message).toBe("--output is given twice (as -o and --output); it takes one value: give it once");
    expect(refused(["--since=1", "--since", "2", "--since", "-1h"])?.message).toBe("--since is given 3 times; it takes one value: give it once");
    // a flag with no value before the next flag counts too
    expect(refused(["--dir", "--dir", "b"])?.message).toBe("--dir is given twice; it takes one value: give it once");
    // a short flag with = (it slipped through: an array reached serve, 70), and the camelCase spelling mri also takes (last won)
    expect(refused(["-o=a.zip", "--output", "b.zip"])?.message).toBe("--output is given twice (as -o and --output); it takes one value: give it once");
    expect(refused(["--output", "a", "-o=b"])?.message).toBe("--output is given twice (as --output and -o); it takes one value: give it once");
    // a one-letter flag written with two dashes is the same flag to mri (--o a --output b wrote a.zip, silently)
    expect(refused(["--o", "a.zip", "--output", "b.zip"])?.message).toBe("--output is given twice (as --o and --output); it takes one value: give it once");
    const camel: CommandSpec = { ...spec, options: [{ flags: "--api-url <url>", description: "" }] };
    expect(() => refuseRepeatedFlags(camel, ["--api-url", "http://a", "--apiUrl", "http://b"])).toThrow(
      "--api-url is given twice (as --api-url and --apiUrl); it takes one value: give it once",
    );
  });

  test("a repeatable flag, a flag without a value, a value that spells a flag, and words after -- are left alone", () => {
    expect(refused(["--name", "a", "--name", "b", "--dir", "d"])).toBeUndefined();
    expect(refused(["--json", "--json"])).toBeUndefined();
    expect(refused(["--since", "-1", "--dir", "d"])).toBeUndefined();
    expect(refused(["--dir", "d", "--", "--dir", "e"])).toBeUndefined();
    expect(refused(["--dir", "--", "--dir"])).toBeUndefined();
  });
});

describe("refuseEmptyValues", () => {
  test("two values for a one-value flag, in a spelling the words did not show, are refused; a repeatable flag's are kept", () => {
    expect(() => refuseEmptyValues(spec, { dir: ["a", "b"] })).toThrow("--dir is given more than once; it takes one value: give it once");
    expect(() => refuseEmptyValues(spec, { name: ["a", "b"] })).not.toThrow();
    expect(() => refuseEmptyValues(spec, { dir: "" })).toThrow("--dir needs a value; it was given empty");
    // mri's true for a flag with nothing after it: a repeatable --name became the name "true"
    expect(() => refuseEmptyValues(spec, { name: ["a.example", true] })).toThrow("--name needs a value; none followed it");
    expect(() => refuseEmptyValues(spec, { dir: true })).toThrow(
      "--dir needs a value; none followed it (a value that starts with a dash goes after =, as --dir=-x)",
    );
    expect(() => refuseEmptyValues(spec, { json: true })).not.toThrow();
  });
});

describe("refuseMisreadWords", () => {
  test("a dotted flag is refused before mri makes an object of it (a home named [object Object], or mri's own TypeError: 70)", () => {
    expect(() => refuseMisreadWords(["bun", "flashlex", "hub", "thing", "list", "--dir.x", "y"], [])).toThrow('"--dir.x" is no flag');
    expect(() => refuseMisreadWords(["bun", "flashlex", "--dir.x=y"], [])).toThrow('"--dir.x" is no flag');
    expect(() => refuseMisreadWords(["bun", "flashlex", "--since=2026.12", "--dir", "./a.b"], [])).not.toThrow();
    expect(() => refuseMisreadWords(["bun", "flashlex", "--", "--dir.x"], [])).not.toThrow();
  });
});
