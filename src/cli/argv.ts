/**
 * What main.ts does to the command line around cac's parsing, so that every command gets its
 * values the same way.
 */
import type { CAC } from "cac";
import { UsageError } from "../shared/errors.ts";
import { quoteGiven } from "../shared/log.ts";
import { nearestSpelling } from "../shared/spelling.ts";
import type { CommandSpec, OptionSpec, Options } from "./command.ts";

/** The flags whose value `-` means stdin (--file) or stdout (-o). */
const STREAM_FLAGS = new Set(["-o", "--output", "-f", "--file"]);

/**
 * cac (through mri) turns every value that looks like a number into one: `--limit 0x10` becomes
 * 16, `-c 1e3` becomes the path "1000", `--data ""` becomes 0. Arguments cannot hold NUL, so a
 * NUL put in front of each number-looking word (and of each word of a dash and a digit, which mri
 * would read as flags, and of a lone dash after -o or --file) keeps it text through parsing, and
 * `restoreArgumentsText` takes it off again; commands parse their numbers themselves, strictly.
 * Every word after `--` is kept as text and positional the same way.
 */
export function keepArgumentsText(argv: string[]): string[] {
  // mri's own test (`+text * 0 === 0`), which also turns "" and "  " into 0
  const looksNumeric = (text: string) => Number(text) * 0 === 0;
  // After `--` every word is positional (`hub send -- -1`, a thing named "-1"): cac would keep
  // them apart from the arguments, after its check of the required ones, so the marker goes and
  // each word is kept as text.
  const end = argv.indexOf("--", 2);
  if (end >= 0) return [...keepArgumentsText(argv.slice(0, end)), ...argv.slice(end + 1).map((arg) => `\0${arg}`)];
  return argv.map((arg, i) => {
    if (i < 2) return arg;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    if (eq > 0) return looksNumeric(arg.slice(eq + 1)) ? `${arg.slice(0, eq + 1)}\0${arg.slice(eq + 1)}` : arg;
    // a word of a dash and a digit (`--limit -1`, `--since -1h`, `--batch -10%`) is a value too:
    // mri would read it as flags ("-1h" as -1 -h, which asks for help), and no flag is a digit
    const second = arg.charCodeAt(1);
    if (arg[0] === "-" && ((second >= 0x30 && second <= 0x39) || second === 0x2e) /* . */) return `\0${arg}`;
    // a lone dash after a flag that names a file to read or write is stdin or stdout (`-o -`,
    // `--file -`, POSIX's convention): mri read it as a flag with no name, and cac said the value
    // was missing, which it stays for every other flag (`--dir -` would make a directory "-")
    if (arg === "-" && STREAM_FLAGS.has(argv[i - 1]!)) return "\0-";
    return !arg.startsWith("-") && looksNumeric(arg) ? `\0${arg}` : arg;
  });
}

/**
 * Refuses the words mri would read as something no command asked for, before it parses them
 * (words after `--` are left alone); throws UsageError (64):
 * - several letters after one dash holding an `h` (`--name -sh`): mri reads one-letter flags,
 *   `-h` among them, so the command printed its help and exited 0, doing nothing it was asked;
 *   a value that starts with a dash is written with `=`;
 * - a dotted flag (`--dir.x y`): mri makes `dir` an object, which a command took for a path
 *   (`[object Object]`), or, with `--dir` given too, mri itself threw (70, as a bug).
 */
export function refuseMisreadWords(argv: readonly string[], commands: readonly CommandSpec[]): void {
  const end = argv.indexOf("--", 2);
  const words = argv.slice(2, end < 0 ? undefined : end);
  for (const [i, word] of words.entries()) {
    if (/^-[A-Za-z]{2,}$/.test(word) && word.includes("h")) {
      // after a flag of the command's that takes a value, that flag joined to it (mri reads
      // `-c=-hv` and `--name=-hv` alike); else the letters as flags of their own
      const before = words[i - 1];
      const meant =
        before !== undefined && valueFlagsOf(commands).has(before)
          ? `to give it as the value of ${before}, write ${before}=${word.length <= 48 ? word : "-VALUE"}`
          : word.length <= 6
            ? `give the flags apart (${[...word.slice(1)].map((c) => `-${c}`).join(" ")}), or join a value that starts with a dash to its flag with =, as in --flag=${word}`
            : "give the flags apart, or join a value that starts with a dash to its flag with =, as in --flag=-VALUE";
      throw new UsageError(`${quoteGiven(word)} reads as one-letter flags, -h among them; ${meant}`);
    }
    if (/^--[^=.]+\./.test(word)) {
      throw new UsageError(`${quoteGiven(word.split("=")[0]!)} is no flag: a flag's name has no dot (a value goes after = or a space)`);
    }
  }
}

/**
 * Refuses a value joined to a flag of `spec` that takes none (`--json=no`): mri turns the flag
 * on and makes the value a word of its own, which the command then refused as an argument
 * ("messages list takes no ids"). `=true` and `=false` are mri's own, and mean what they say.
 * Throws UsageError (64) naming the flag and the value.
 */
export function refuseSwitchValues(spec: CommandSpec, argv: readonly string[]): void {
  const switches = new Set(spec.options.filter((o) => !/[<[]/.test(o.flags)).flatMap((o) => o.flags.split(/[\s,]+/).filter((f) => f.startsWith("--"))));
  const end = argv.indexOf("--", 2);
  for (const word of argv.slice(2, end < 0 ? undefined : end)) {
    const eq = word.indexOf("=");
    const flag = word.slice(0, eq);
    const value = word.slice(eq + 1);
    if (eq > 0 && switches.has(flag) && value !== "true" && value !== "false") {
      throw new UsageError(`${flag} takes no value (it was given ${quoteGiven(value)}): give ${flag} alone to turn it on, or leave it out`);
    }
  }
}

/** Takes off the NUL `keepArgumentsText` put in front of the words it kept as text. */
export function restoreArgumentsText(cli: CAC): void {
  const strip = (value: unknown): unknown => (typeof value === "string" ? value.replace(/^\0/, "") : Array.isArray(value) ? value.map(strip) : value);
  cli.args = cli.args.map((arg) => strip(arg) as string);
  for (const key of Object.keys(cli.options)) cli.options[key] = strip(cli.options[key]);
}

/**
 * Refuses a flag that takes one value given more than once in `words` (the arguments after
 * `flashlex`, as typed): `--dir a --dir b`, `-o a --output b`, `--since=1 --since 2`. Throws
 * UsageError (64) naming the flag and how it was written. A flag meant to repeat
 * (OptionSpec.repeatable: `hub init --name`, `hub update --things`) is left alone, and so is
 * everything after `--`. Read from the words, not from cac's options: mri keeps the last of
 * `--dir a --dir b` but the *first* of `-o a --output b`, so either way one of the two values the
 * user typed was dropped without a word, and the options cannot tell the second case at all.
 */
export function refuseRepeatedFlags(spec: CommandSpec, words: readonly string[]): void {
  const optionOf = new Map<string, OptionSpec>();
  for (const option of spec.options) {
    if (!option.flags.includes("<")) continue;
    for (const flag of option.flags.slice(0, option.flags.indexOf("<")).split(",")) optionOf.set(camelFlag(flag.trim()), option);
  }
  const written = new Map<OptionSpec, string[]>();
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === "--") break;
    // `--dir=a` and `-d=a` carry their value; `--apiUrl` is `--api-url` to mri
    const eq = word.startsWith("-") ? word.indexOf("=") : -1;
    const option = optionOf.get(camelFlag(eq > 0 ? word.slice(0, eq) : word));
    if (!option) continue;
    // its value, unless the next word is a flag (mri then takes none: `--dir --json`); a dash
    // and a digit or a dot is a value (keepArgumentsText)
    const next = words[i + 1];
    if (eq < 0 && next !== undefined && !(next.length > 1 && next[0] === "-" && !/^-[\d.]/.test(next))) i++;
    if (option.repeatable) continue;
    const forms = written.get(option) ?? [];
    forms.push(eq > 0 ? word.slice(0, eq) : word);
    written.set(option, forms);
  }
  for (const [option, forms] of written) {
    if (forms.length < 2) continue;
    const name = option.flags.match(/--[a-z][\w-]*/i)?.[0] ?? forms[0]!;
    const times = forms.length === 2 ? "twice" : `${forms.length} times`;
    const as = new Set(forms).size > 1 ? ` (as ${[...new Set(forms)].join(" and ")})` : "";
    throw new UsageError(`${name} is given ${times}${as}; it takes one value: give it once`);
  }
}

/** A flag word as mri names it: `--api-url` and `--apiUrl` alike, `--d` as `-d`; any other word as it is. */
function camelFlag(word: string): string {
  if (!word.startsWith("--")) return word;
  return word.length === 3 ? word.slice(1) : `--${word.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())}`;
}

/**
 * Refuses a flag given an empty value (`--dir ''`, an unset variable in a script): every command
 * would otherwise take it for not given and use the default, such as `hub init --dir ''` making
 * ~/.flashlex-hub; and a one-value flag mri gave two values (an array) in a spelling
 * refuseRepeatedFlags does not know. Throws UsageError (64) naming the flag as it is written.
 */
export function refuseEmptyValues(spec: CommandSpec, options: Options): void {
  for (const option of spec.options) {
    if (!option.flags.includes("<")) continue;
    const given = optionNames(option.flags).map((name) => options[name]);
    const written = option.flags.match(/--[a-z][\w-]*/i)?.[0] ?? option.flags;
    if (given.some((value) => value === "" || (Array.isArray(value) && value.includes("")))) {
      throw new UsageError(`${written} needs a value; it was given empty`);
    }
    // mri's `true`: the flag stood last, or before another flag (`--name --json`); a repeatable
    // flag's became the name "true" in hub.yml and the broker's certificate
    if (given.some((value) => value === true || (Array.isArray(value) && value.includes(true)))) {
      throw new UsageError(`${written} needs a value; none followed it (a value that starts with a dash goes after =, as ${written}=-x)`);
    }
    // Two values (an array) for a flag that takes one, in a spelling refuseRepeatedFlags did not
    // recognise in the words: no command may take an array for the string it expects.
    if (!option.repeatable && given.some(Array.isArray)) throw new UsageError(`${written} is given more than once; it takes one value: give it once`);
  }
}

/** The names cac gives an option's value: `-o, --output <file>` → o, output. */
function optionNames(flags: string): string[] {
  return [...flags.replace(/[<[].*$/, "").matchAll(/--?([a-z][\w-]*)/gi)].map((m) => m[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()));
}

/** The flags of `commands` that take a value, as typed: `-c`, `--config`, `--name`. */
export function valueFlagsOf(commands: readonly CommandSpec[]): Set<string> {
  // Plain loops and string slicing: matchCommand runs this before every command, and a first use
  // of a regular expression or of flatMap costs a cold process about a millisecond each.
  const valueFlags = new Set<string>();
  for (const spec of commands) {
    for (const { flags } of spec.options) {
      const value = flags.indexOf("<");
      if (value < 0) continue;
      for (const flag of flags.slice(0, value).split(",")) valueFlags.add(flag.trim());
    }
  }
  return valueFlags;
}

/**
 * The table entry whose words are the first positional words of `words` (the arguments after
 * `flashlex`), longest first, and the arguments without those words: cac matches one word, so
 * a command of several (`hub thing create`) is found here first. Flags may stand before or
 * between the words, as cac allows for one-word commands (`hub --dir X thing list`): a flag
 * that takes a value anywhere in the table takes the next argument with it.
 */
export function matchCommand(table: readonly CommandSpec[], words: readonly string[]): { spec: CommandSpec; rest: string[] } | undefined {
  const valueFlags = valueFlagsOf(table);
  const positional: number[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === "--") break;
    if (word.startsWith("-") && word.length > 1) {
      if (!word.includes("=") && valueFlags.has(word)) i++;
      continue;
    }
    positional.push(i);
  }
  // The longest name the words spell out (`hub thing create` before `hub`).
  let best: { spec: CommandSpec; length: number } | undefined;
  for (const spec of table) {
    const names = spec.name.split(" ");
    if (names.length <= (best?.length ?? 0)) continue;
    if (names.every((name, i) => positional[i] !== undefined && words[positional[i]!] === name)) best = { spec, length: names.length };
  }
  if (!best) return undefined;
  const taken = new Set(positional.slice(0, best.length));
  return { spec: best.spec, rest: words.filter((_, i) => !taken.has(i)) };
}

/**
 * What a flag the command does not have was likely meant to be, for cac's "Unknown option" (64):
 * the command's own long flag nearest in spelling (at most two letters off, as `--brokr-host`),
 * or the directory flag of the other side (`-d` on a hub command, whose home is `--dir`; `--dir`
 * on a thing command, whose data directory is `-d`; `-d` on `enroll`, whose folder is `--dir`).
 * Undefined when nothing is near.
 */
export function unknownOptionHint(spec: CommandSpec, flag: string): string | undefined {
  // every command's own flags, and the two cac gives each (`--HELP` and `-H` were given no hint)
  const flags = [...spec.options.flatMap((option) => option.flags.split(/[\s,]+/).filter((word) => word.startsWith("-"))), "--help", "-h", "--version", "-v"];
  if (flag === "-d" && flags.includes("--dir")) return spec.name.startsWith("hub ") ? "the hub's home is --dir" : "did you mean --dir?";
  if (flag === "--dir" && flags.includes("-d")) return "the thing's data directory is -d (its config -c, its keys -k)";
  // flags are lower-case: `--DIR` is --dir with the caps lock on
  if (flag !== flag.toLowerCase() && flags.includes(flag.toLowerCase())) return `did you mean ${flag.toLowerCase()}?`;
  const nearest = nearestSpelling(
    flag,
    flags.filter((f) => f.startsWith("--")),
  );
  return nearest ? `did you mean ${nearest}?` : undefined;
}
