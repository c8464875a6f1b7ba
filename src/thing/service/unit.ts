/// <reference path="../../../systemd/text-imports.d.ts" />
/**
 * The systemd unit: the template embedded in the binary and its rendering. Pure functions, no
 * I/O, so the rules for what systemd can and cannot express are tested on their own.
 */

import { posix } from "node:path";
import template from "../../../systemd/flashlex.service" with { type: "text" };
import { UsageError } from "../../shared/errors.ts";
import { markerPaths } from "../update/marker.ts";

/** The unit template, inlined at build time (`bun build --compile` embeds the text). */
export const UNIT_TEMPLATE: string = template;

export interface UnitValues {
  /** the executable ExecStart runs: the compiled flashlex binary */
  binary: string;
  /** arguments between the executable and `serve` (only a source run has one: the script) */
  binaryArgs?: readonly string[];
  config: string;
  keys: string;
  data: string;
  user: string;
  group: string;
  description?: string;
  /** systemd's version where the unit will run; decides the restart backoff lines */
  systemdVersion?: number | null;
  /** for the header comment: which flashlex rendered the file */
  generated?: string;
  /**
   * Self-update (docs/updates.md): `true` runs the update guard before every start and makes the
   * binary's directory writable; a string says why not (a comment in the unit), and the binary
   * stays read-only. Default: off.
   */
  selfUpdate?: true | string;
}

/** RestartSteps= and RestartMaxDelaySec= exist from this systemd version on. */
export const BACKOFF_SINCE_SYSTEMD = 254;

/**
 * A growing restart delay where systemd has one (5 s, 8 s, 13 s, ... up to 1 min); older
 * versions (Debian 12 / Raspberry Pi OS bookworm ship 252) would warn about unknown keys, so
 * they get a comment and the fixed RestartSec.
 */
export function backoffLines(systemdVersion: number | null | undefined): string {
  if (systemdVersion != null && systemdVersion >= BACKOFF_SINCE_SYSTEMD) {
    return "RestartSteps=5\nRestartMaxDelaySec=1min";
  }
  const seen = systemdVersion == null ? "unknown here" : `this one is ${systemdVersion}`;
  return (
    `# RestartSteps=/RestartMaxDelaySec= (a growing delay) need systemd ${BACKOFF_SINCE_SYSTEMD}; ${seen}, so each\n` +
    "# restart waits RestartSec and StartLimitBurst ends a crash loop."
  );
}

/**
 * Characters we refuse in a path rather than escape: their escaping differs between the
 * settings a path appears in (ExecStart= C-unescapes and expands `$`, BindPaths= splits on `:`
 * and unescapes only separators), so no single spelling is right in all of them.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what a unit cannot hold
const UNEXPRESSIBLE = /[\x00-\x1f\x7f"\\$:]/;

/**
 * One path as a word valid in ExecStart=, BindPaths=, BindReadOnlyPaths= and ReadWritePaths=:
 * `%` doubled (every one of them expands specifiers), double quotes around it when it holds
 * whitespace or a quote (all four unquote). `executable`: the command ExecStart= runs, where
 * systemd also refuses a single quote ("Executable name contains special characters", 252).
 */
export function systemdPath(path: string, what: string, options: { executable?: boolean } = {}): string {
  if (!path.startsWith("/")) throw new UsageError(`${what}: ${path}: the service needs an absolute path`);
  const bad = UNEXPRESSIBLE.exec(path) ?? (options.executable ? /'/.exec(path) : null);
  if (bad) {
    throw new UsageError(`${what}: ${JSON.stringify(path)}: a systemd unit cannot name a path containing ${JSON.stringify(bad[0])}; move or rename it`);
  }
  if (path !== "/" && (posix.normalize(path) !== path || path.endsWith("/"))) {
    throw new UsageError(`${what}: ${path}: not a normalized path (no ., .., // or trailing /)`);
  }
  const escaped = path.replaceAll("%", "%%");
  return /[\s';]/.test(escaped) ? `"${escaped}"` : escaped;
}

/** User= and Group= take a name (or a number); anything else is refused, not escaped. */
function systemdName(name: string, what: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}$/.test(name)) {
    throw new UsageError(`${what}: ${JSON.stringify(name)}: not a user or group name systemd accepts`);
  }
  return name;
}

/** Free text to the end of the line (Description=, comments): one line, `%` doubled. */
function systemdText(text: string, what: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what a unit line cannot hold
  if (/[\x00-\x1f\x7f\\]/.test(text)) throw new UsageError(`${what}: must be one line without control characters or backslashes`);
  return text.replaceAll("%", "%%");
}

/** The command the unit runs before every start; the guard's path is the one serve writes (update/marker.ts). */
export function guardCommand(data: string): string {
  return `/bin/sh ${systemdPath(markerPaths(data).guard, "data directory")}`;
}

function guardLines(values: UnitValues): string {
  if (values.selfUpdate !== true) {
    const why = systemdText(values.selfUpdate ?? "not asked for", "self-update");
    return `# Self-update is off (${why}): no update guard, and the binary stays read-only.`;
  }
  return [
    "# Self-update (docs/updates.md): before every start the update guard, which serve writes at each",
    "# start, rolls back a new binary that failed to start twice. It runs as the service user in",
    '# the same sandbox. "-": a failing or missing guard (the very first start) does not stop the start.',
    `ExecStartPre=-${guardCommand(values.data)}`,
  ].join("\n");
}

/**
 * The Bind*Paths= and ReadWritePaths= lines. Writable: the data directory; the keys directory,
 * where certificate renewal (src/thing/renewal) writes the new key and certificate and renames
 * them into place; with self-update, the binary's directory too (the updater renames a verified
 * binary over this one; a binary bound onto itself could not be renamed over at all). Read-only:
 * the config, and without self-update the binary: bound after the writable directories that
 * may hold them (systemd mounts deeper paths last), so they stay read-only inside them.
 */
function filesystemLines(values: UnitValues): string {
  const path = (p: string, what: string) => systemdPath(p, what);
  const selfUpdate = values.selfUpdate === true;
  const writable = [...new Set([...(selfUpdate ? [posix.dirname(values.binary)] : []), values.keys, values.data])];
  const readOnly = [...(selfUpdate ? [] : [path(values.binary, "binary")]), path(values.config, "config")];
  const writableWords = writable.map((p) => path(p, p === values.data ? "data directory" : p === values.keys ? "keys directory" : "the binary's directory"));
  return [
    `# Writable: ${selfUpdate ? "the binary's directory (self-update), " : ""}the keys (certificate renewal) and the data; the rest read-only.`,
    `BindReadOnlyPaths=${readOnly.join(" ")}`,
    `BindPaths=${writableWords.join(" ")}`,
    `ReadWritePaths=${writableWords.join(" ")}`,
  ].join("\n");
}

/** Replaces every `{{name}}` in the template; a placeholder without a value is a bug. */
export function renderUnit(unitTemplate: string, values: UnitValues): string {
  const binary = [systemdPath(values.binary, "binary", { executable: true }), ...(values.binaryArgs ?? []).map((a) => systemdPath(a, "script"))].join(" ");
  const rendered: Record<string, string> = {
    binary,
    config: systemdPath(values.config, "config"),
    keys: systemdPath(values.keys, "keys directory"),
    data: systemdPath(values.data, "data directory"),
    user: systemdName(values.user, "user"),
    group: systemdName(values.group, "group"),
    description: systemdText(values.description ?? "FlashLex thing agent", "description"),
    backoff: backoffLines(values.systemdVersion),
    generated: systemdText(values.generated ?? "flashlex", "generated"),
    guard: guardLines(values),
    filesystem: filesystemLines(values),
  };
  return unitTemplate.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = rendered[name];
    if (value === undefined) throw new Error(`unit template: unknown placeholder {{${name}}}`);
    return value;
  });
}
