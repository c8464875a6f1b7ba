/**
 * A release manifest: what the release step signed and what the agent checks before it replaces
 * itself. One per release, beside the binaries:
 *
 *   manifest.json   the manifest, in canonical form (below); the bytes the signature covers
 *   manifest.sig    the Ed25519 signature of manifest.json's bytes, base64 (src/crypto/update-signing.ts)
 *
 * Canonical form: JSON with object keys sorted (code point order), no whitespace, UTF-8, no
 * trailing newline. The verifier never re-serialises: it checks the signature over the bytes it
 * received and only then parses them, so the form matters only to whoever signs (one spelling,
 * the same bytes for the same manifest on every machine).
 *
 *   { "format": 1, "product": "flashlex", "version": "2.0.0", "commit": "abc1234",
 *     "created": "2026-12-01T02:00:00Z",
 *     "targets": { "linux-x64": { "file": "flashlex-linux-x64", "sha256": "<64 hex>", "size": 117300000 }, ... } }
 *
 * Only the thing's own target entry is used by a thing: the agent refuses a manifest without an
 * entry for the target it was built for, and a file whose size or SHA-256 differs.
 */
import { z } from "../shared/zod.ts";

export const MANIFEST_FILE = "manifest.json";
export const SIGNATURE_FILE = "manifest.sig";
export const MANIFEST_FORMAT = 1;

/** A release version as the hub and thing compare it: semver-like text, no spaces or slashes. */
export const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;
/**
 * The form of a target name (`linux-arm64`). Which names FlashLex ships is targets.ts's to say: a
 * thing reads only its own entry, so it takes a manifest that also names targets newer than itself.
 */
const TARGET_PATTERN = /^[a-z0-9][a-z0-9-]{0,39}$/;
const FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const TargetEntrySchema = z.strictObject({
  file: z.string().regex(FILE_PATTERN, "a file name beside the manifest"),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lower-case hex digits"),
  size: z.int().positive(),
});

export const ManifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  product: z.literal("flashlex"),
  version: z.string().regex(VERSION_PATTERN, "a version (letters, digits, . + _ -)"),
  commit: z.string().max(64),
  // a time in UTC: self-update refuses a release signed before the one that runs (docs/updates.md)
  created: z.iso.datetime({ message: "a time in UTC, ISO 8601 (2026-12-01T02:00:00Z)" }),
  targets: z.record(z.string().regex(TARGET_PATTERN, "a target name"), TargetEntrySchema).refine((t) => Object.keys(t).length > 0, "no targets"),
});

export type ReleaseManifest = z.infer<typeof ManifestSchema>;
export type ManifestTarget = z.infer<typeof TargetEntrySchema>;

/** The canonical bytes of any JSON value: keys sorted, no whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * The bytes to sign for `manifest`, validated first: a bad manifest is never signed. Throws an
 * Error naming the first problem on one line, as parseManifest does (`version: a version ...`).
 */
export function manifestBytes(manifest: ReleaseManifest): Uint8Array {
  return new TextEncoder().encode(canonicalJson(validManifest(manifest)));
}

function validManifest(value: unknown): ReleaseManifest {
  const result = ManifestSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  throw new Error(`the release manifest is not valid: ${issue.path.join(".") || "(top)"}: ${issue.message}`);
}

/**
 * Parses manifest bytes (already verified by the caller). Throws an Error naming the first
 * problem (a key path and what is wrong) when the bytes are not a manifest of this format, or
 * not in canonical form (a manifest someone re-indented is not the one that was signed).
 */
export function parseManifest(bytes: Uint8Array): ReleaseManifest {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  const manifest = validManifest(JSON.parse(text));
  if (canonicalJson(manifest) !== text) throw new Error("the release manifest is not in canonical form");
  return manifest;
}

/** How far after "now" a manifest's `created` may be, in ms: clocks disagree, but not by a day. */
export const MAX_SIGNED_AHEAD_MS = 24 * 3600 * 1000;

/**
 * Why `manifest` cannot be taken at `nowMs` (Unix ms) for its signing time, or undefined: one
 * signed more than MAX_SIGNED_AHEAD_MS ahead, by a signing machine whose clock was wrong. A thing
 * refuses every release signed before the one it runs (docs/updates.md), so one taken from the
 * year 9999 would have stopped its updates for good.
 */
export function signedTooLate(manifest: Pick<ReleaseManifest, "created">, nowMs: number): string | undefined {
  const ahead = Date.parse(manifest.created) - nowMs;
  if (!(ahead > MAX_SIGNED_AHEAD_MS)) return undefined;
  return `the manifest says it was signed at ${manifest.created}, more than a day after now (${new Date(nowMs).toISOString().replace(/\.\d+Z$/, "Z")}): the signing machine's clock was wrong; sign the release again with a right clock`;
}
