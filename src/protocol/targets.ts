/**
 * The release targets FlashLex ships, by name: the machine each one's binary runs on. A release
 * manifest names its binaries by these (release-manifest.ts); scripts/targets.ts builds each one
 * (and the compiler holds it to exactly these names); the hub refuses a release naming another,
 * or whose binary is built for another machine than its name says (src/hub/updates/releases.ts);
 * a thing looks only for its own.
 */

/** A CPU architecture as Node and Bun name it (`process.arch`). */
export type Architecture = "x64" | "arm64" | "arm";

interface Machine {
  /** process.arch of a machine that runs it natively */
  arch: Architecture;
  libc: "glibc" | "musl";
}

const MACHINES = {
  "linux-x64": { arch: "x64", libc: "glibc" },
  "linux-arm64": { arch: "arm64", libc: "glibc" },
  "linux-armv7": { arch: "arm", libc: "glibc" },
  "linux-x64-baseline": { arch: "x64", libc: "glibc" },
  "linux-x64-musl": { arch: "x64", libc: "musl" },
  "linux-arm64-musl": { arch: "arm64", libc: "musl" },
} as const satisfies Record<string, Machine>;

export type ReleaseTargetName = keyof typeof MACHINES;

export interface ReleaseTarget extends Machine {
  name: ReleaseTargetName;
}

export const RELEASE_TARGETS: readonly ReleaseTarget[] = Object.entries(MACHINES).map(([name, machine]) => ({ name: name as ReleaseTargetName, ...machine }));

/** The target called `name`, or undefined when FlashLex ships none by that name. */
export function releaseTarget(name: string): ReleaseTarget | undefined {
  return RELEASE_TARGETS.find((t) => t.name === name);
}
