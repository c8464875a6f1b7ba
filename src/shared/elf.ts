/**
 * The architecture an executable was built for, from its ELF header (the System V ABI: e_ident
 * class at byte 4, data encoding at 5, e_machine at 18, little-endian on every target we ship).
 * Checked after the signed manifest's target name, twice: the hub refuses a release whose
 * binary does not fit the target it is listed for, and a thing refuses one that does not fit
 * its own CPU, so files mixed up when a release was signed cannot put an arm64 binary on an x64
 * thing.
 */
import { closeSync, openSync, readSync } from "node:fs";

/** process.arch → [ELF class (1: 32-bit, 2: 64-bit), e_machine] */
const EXPECTED: Record<string, [number, number]> = {
  x64: [2, 62], // EM_X86_64
  arm64: [2, 183], // EM_AARCH64
  arm: [1, 40], // EM_ARM
};

const MACHINE_NAMES: Record<number, string> = { 62: "x86-64", 183: "aarch64", 40: "arm", 3: "x86" };

/** The name of `arch` (process.arch) as the mismatch sentences say it: `x64` → `x86-64`. */
export function machineName(arch: string): string {
  const expected = EXPECTED[arch];
  return expected ? MACHINE_NAMES[expected[1]]! : arch;
}

/**
 * Why `file` cannot run on a CPU of `arch` (process.arch; default this one's), as a clause
 * (`it is built for aarch64, not x86-64`), or undefined when its ELF header fits. Throws what
 * opening or reading the file throws (ENOENT, EACCES).
 */
export function elfMismatch(file: string, arch: string = process.arch): string | undefined {
  const header = Buffer.alloc(20);
  const fd = openSync(file, "r");
  try {
    readSync(fd, header, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) return "it is not an ELF executable";
  const expected = EXPECTED[arch];
  if (!expected) return `${arch} is not an architecture FlashLex ships`;
  const machine = header.readUInt16LE(18);
  if (header[4] !== expected[0] || header[5] !== 1 || machine !== expected[1]) {
    return `it is built for ${MACHINE_NAMES[machine] ?? `ELF machine ${machine}`}, not ${machineName(arch)}`;
  }
  return undefined;
}
