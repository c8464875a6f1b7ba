/**
 * The one table of release targets: build.ts compiles from it, release.ts names its archives
 * after it, tests pick the host entry from it. Add a target here and nowhere else.
 */
export interface Target {
  /** the binary is dist/flashlex-<name> */
  name: string;
  /** `bun build --compile --target=` */
  bunTarget: string;
  /** process.arch of a machine that runs it natively */
  arch: "x64" | "arm64" | "arm";
  /** how to run it on an x64 build machine (qemu), for smoke tests; absent: native only */
  emulator?: string[];
}

export const TARGETS: readonly Target[] = [
  { name: "linux-x64", bunTarget: "bun-linux-x64", arch: "x64" },
  {
    name: "linux-arm64",
    bunTarget: "bun-linux-arm64",
    arch: "arm64",
    emulator: ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"],
  },
  // Later (another issue), same shape:
  //   { name: "linux-x64-baseline", bunTarget: "bun-linux-x64-baseline", arch: "x64" }  (CPUs without AVX2)
  //   { name: "linux-x64-musl", bunTarget: "bun-linux-x64-musl", arch: "x64" }          (Alpine; cannot run here)
  //   { name: "linux-arm64-musl", bunTarget: "bun-linux-arm64-musl", arch: "arm64" }
  // and the armv7 Node single executable (Pi 2/3 on a 32-bit OS), which is not a `bun build
  // --compile` target: it will need a `kind: "node-sea"` field and its own builder (TOOLCHAIN.md).
];

/** The target this machine runs natively (glibc); undefined on an architecture we do not ship. */
export function hostTarget(): Target | undefined {
  return TARGETS.find((t) => t.arch === process.arch && !t.name.includes("musl") && !t.name.includes("baseline"));
}

export function targetByName(name: string): Target | undefined {
  return TARGETS.find((t) => t.name === name);
}
