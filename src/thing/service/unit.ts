/// <reference path="../../../systemd/text-imports.d.ts" />
/**
 * The systemd unit: the template embedded in the binary and its rendering. Pure functions, no
 * I/O, so the rules for what systemd can and cannot express are tested on their own.
 */

import { posix } from "node:path";
import template from "../../../systemd/flashlex.service" with { type: "text" };
import { UsageError } from "../../shared/errors.ts";

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
 * whitespace or a quote (all four unquote).
 */
export function systemdPath(path: string, what: string): string {
  if (!path.startsWith("/")) throw new UsageError(`${what}: ${path}: the service needs an absolute path`);
  const bad = UNEXPRESSIBLE.exec(path);
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

/** Replaces every `{{name}}` in the template; a placeholder without a value is a bug. */
export function renderUnit(unitTemplate: string, values: UnitValues): string {
  const binary = [systemdPath(values.binary, "binary"), ...(values.binaryArgs ?? []).map((a) => systemdPath(a, "script"))].join(" ");
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
  };
  return unitTemplate.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = rendered[name];
    if (value === undefined) throw new Error(`unit template: unknown placeholder {{${name}}}`);
    return value;
  });
}
