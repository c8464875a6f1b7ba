/**
 * The contents of key and certificate files as people really have them, made into the one form
 * OpenSSL, Bun's TLS and jose all read: canonical PEM (64-column base64, LF line ends, nothing
 * around the blocks). What can be normalised is, silently: CRLF or CR line ends, a UTF-8 BOM
 * (or UTF-16 with its BOM, as Windows Notepad saves "Unicode"), trailing spaces, text before and
 * after the blocks (as `openssl x509 -text` writes it), base64 in one long line or at odd
 * widths, a binary DER file instead of PEM. (A certificate file not in leaf-first order is put
 * right by the caller, which knows the key: src/thing/identity.ts.)
 * What cannot is refused with a KeyFileError that says what the bytes are and, where one command
 * converts them, which: PKCS#12 (.p12/.pfx), PKCS#7 (.p7b), an encrypted key, a certificate
 * where a key belongs, a key where a certificate belongs, a certificate request, an empty file.
 *
 * Pure: bytes in, text and KeyObjects out, no file names (the caller prefixes its own) and never
 * any key material in a message. RFC 7468 is the PEM being produced; the sniffing of binary
 * containers below only recognises their first bytes (RFC 7292 PFX, RFC 5652 ContentInfo), it
 * parses nothing.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { shellWord } from "../shared/shell-word.ts";
import { CryptoError } from "./errors.ts";
import { SUPPORTED_KEYS } from "./keys.ts";

/** What a file is for; it decides what is expected and which conversion command to suggest. */
export type KeyFileRole = "certificate" | "root CA" | "private key";

/**
 * A file that cannot be used as it is. `message` says what is wrong, without the file name;
 * `convert` is an openssl command that fixes it, with `FILE` standing for the file's path.
 */
export class KeyFileError extends CryptoError {
  constructor(
    message: string,
    readonly convert?: string,
  ) {
    super(message);
    this.name = "KeyFileError";
  }

  /** One line for a user: `<file>: <what is wrong>[; convert it with: <command>]`. */
  describe(file: string): string {
    const command = this.convert?.replaceAll("FILE", shellWord(file));
    return `${file}: ${this.message}${command ? `; convert it with: ${command}` : ""}`;
  }
}

export interface NormalisedCertificates {
  /** every certificate of the file, in file order, canonical PEM */
  pem: string;
  /** the same certificates as DER, in the same order */
  der: Buffer[];
}

export interface NormalisedPrivateKey {
  /** PKCS#8 PEM, whatever the file held: the one key format every TLS stack reads */
  pem: string;
  key: KeyObject;
}

interface Block {
  label: string;
  headers: string[];
  der: Buffer;
  /** the file was binary DER, not PEM (conversion commands then need `-inform DER`) */
  binary?: boolean;
}

/**
 * Lenient on everything around the base64 and strict on the base64 itself: a label line may have
 * trailing blanks, the body any line width and blank lines, RFC 1421 headers (`Proc-Type: ...`)
 * are kept aside.
 */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+?)-----([\s\S]*?)-----END \1-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

const PRIVATE_KEY_LABELS = new Set(["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]);
const ENCRYPTED = "the private key is encrypted, and the agent runs unattended with nobody to type a passphrase";
const DECRYPT = "openssl pkey -in FILE -out FILE.unencrypted (it asks for the passphrase), then use FILE.unencrypted";

/** Certificates of a thing certificate or root CA file, normalised; KeyFileError if there are none. */
export function normaliseCertificates(bytes: Uint8Array, role: "certificate" | "root CA"): NormalisedCertificates {
  const blocks = readBlocks(bytes, role);
  const certificates = blocks.filter((b) => b.label === "CERTIFICATE" || b.label === "X509 CERTIFICATE");
  if (certificates.length === 0) throw whyNot(blocks, role);
  const der = certificates.map((b, i) => {
    try {
      return Buffer.from(new X509Certificate(b.der).raw);
    } catch {
      throw new KeyFileError(`certificate ${i + 1} of the file is damaged (its base64 is not an X.509 certificate)`);
    }
  });
  return { pem: der.map((d) => pem("CERTIFICATE", d)).join(""), der };
}

/**
 * The private key of a key file, normalised to PKCS#8; KeyFileError if there is none, it is
 * encrypted or it cannot be parsed. The key's type is not judged here (`tokenAlgorithmFor`).
 */
export function normalisePrivateKey(bytes: Uint8Array): NormalisedPrivateKey {
  const blocks = readBlocks(bytes, "private key");
  const encrypted = blocks.find((b) => b.label === "ENCRYPTED PRIVATE KEY" || b.headers.some((h) => /^Proc-Type:\s*4,\s*ENCRYPTED/i.test(h)));
  const block = blocks.find((b) => PRIVATE_KEY_LABELS.has(b.label) && b !== encrypted);
  if (!block) throw encrypted ? new KeyFileError(ENCRYPTED, DECRYPT) : whyNot(blocks, "private key");
  const key = parsePrivateKey(block.der, block.label);
  if (!key)
    throw new KeyFileError(`the "${block.label}" block could not be parsed: the key is damaged, or of a kind this build cannot read (${SUPPORTED_KEYS})`);
  return { pem: key.export({ type: "pkcs8", format: "pem" }) as string, key };
}

/** The PEM blocks of a file, or the one DER object it holds, as a pseudo-block. */
function readBlocks(bytes: Uint8Array, role: KeyFileRole): Block[] {
  let buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.subarray(0, 3).equals(UTF8_BOM)) buffer = buffer.subarray(3);
  // Windows Notepad's "Unicode" is UTF-16LE with a BOM; PEM is ASCII, so nothing is lost.
  else if (buffer[0] === 0xff && buffer[1] === 0xfe) buffer = Buffer.from(buffer.subarray(2).toString("utf16le"), "latin1");
  // latin1 maps bytes 1:1, so a binary file survives the detour through a string.
  const text = buffer.toString("latin1");
  if (text.trim() === "") throw new KeyFileError(`the file is empty; it should hold ${expected(role)}`);
  if (text.includes("-----BEGIN ")) return pemBlocksOf(text, role);
  return [{ ...derBlock(buffer, role), binary: true }];
}

function pemBlocksOf(text: string, role: KeyFileRole): Block[] {
  const blocks: Block[] = [];
  for (const match of text.replace(/\r\n?/g, "\n").matchAll(PEM_BLOCK)) {
    const label = match[1]!.trim();
    const lines = match[2]!.split("\n").map((l) => l.trim());
    const headers = lines.filter((l) => l.includes(":"));
    const base64 = lines.filter((l) => !l.includes(":")).join("");
    if (!BASE64.test(base64) || base64.length === 0) {
      throw new KeyFileError(`the "${label}" block is damaged (its body is not base64)`);
    }
    blocks.push({ label, headers, der: Buffer.from(base64, "base64") });
  }
  if (blocks.length === 0) throw new KeyFileError(`a "-----BEGIN" line has no matching "-----END" line; the file should hold ${expected(role)}`);
  return blocks;
}

/**
 * A binary file: one DER object. Tried as what the role expects, then as everything else, so the
 * refusal can say what it is ("a certificate where a key belongs", "a PKCS#12 bundle").
 */
function derBlock(der: Buffer, role: KeyFileRole): Block {
  if (der[0] !== 0x30) throw new KeyFileError(`neither PEM nor DER; the file should hold ${expected(role)}`);
  if (isPkcs12(der)) return { label: "PKCS12", headers: [], der };
  if (isPkcs7(der)) return { label: "PKCS7", headers: [], der };
  if (isCertificate(der)) return { label: "CERTIFICATE", headers: [], der };
  try {
    createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    return { label: "PRIVATE KEY", headers: [], der };
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_MISSING_PASSPHRASE") return { label: "ENCRYPTED PRIVATE KEY", headers: [], der };
  }
  for (const label of ["RSA PRIVATE KEY", "EC PRIVATE KEY"]) if (parsePrivateKey(der, label)) return { label, headers: [], der };
  throw new KeyFileError(`a DER file that is not ${expected(role)}`);
}

function isCertificate(der: Buffer): boolean {
  try {
    new X509Certificate(der);
    return true;
  } catch {
    return false;
  }
}

function parsePrivateKey(der: Buffer, label: string): KeyObject | undefined {
  const type = label === "RSA PRIVATE KEY" ? "pkcs1" : label === "EC PRIVATE KEY" ? "sec1" : "pkcs8";
  try {
    return createPrivateKey({ key: der, format: "der", type });
  } catch {
    // Bun's BoringSSL reads a SEC1 key without its optional public key (RFC 5915 §3; `openssl ec
    // -no_public`) from PEM but not from DER: it was refused as "damaged"
    try {
      return createPrivateKey({ key: pem(label, der), format: "pem" });
    } catch {
      return undefined;
    }
  }
}

/** Why a file holds nothing usable for `role`, from the labels it does hold (labels are not secret). */
function whyNot(blocks: Block[], role: KeyFileRole): KeyFileError {
  const labels = new Set(blocks.map((b) => b.label));
  const has = (...names: string[]) => names.some((n) => labels.has(n));
  if (has("PKCS12")) {
    const command =
      role === "private key"
        ? "openssl pkcs12 -in FILE -nocerts -nodes -out key.pem"
        : role === "root CA"
          ? "openssl pkcs12 -in FILE -cacerts -nokeys -out root-ca.pem"
          : "openssl pkcs12 -in FILE -clcerts -nokeys -out certificate.pem";
    return new KeyFileError(`this is a PKCS#12 bundle (.p12/.pfx), not ${expected(role)}`, command);
  }
  if (has("PKCS7")) {
    const inform = blocks.some((b) => b.binary) ? " -inform DER" : "";
    return new KeyFileError(
      `this is a PKCS#7 bundle (.p7b), not ${expected(role)}`,
      role === "private key" ? undefined : `openssl pkcs7${inform} -print_certs -in FILE -out certificates.pem`,
    );
  }
  if (role === "private key") {
    if (has("CERTIFICATE", "X509 CERTIFICATE"))
      return new KeyFileError("this file holds a certificate, not a private key: the private key is the other file of the pair");
    if (has("PUBLIC KEY", "RSA PUBLIC KEY")) return new KeyFileError("this file holds a public key, not the private key");
    return new KeyFileError(`no private key in the file (found ${describeLabels(labels)})`);
  }
  if (has("ENCRYPTED PRIVATE KEY", ...PRIVATE_KEY_LABELS))
    return new KeyFileError("this file holds a private key, not a certificate: the certificate is the other file of the pair");
  if (has("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"))
    return new KeyFileError("this file holds a certificate request (CSR), not a certificate: the CA signs it to make one");
  return new KeyFileError(`no certificate in the file (found ${describeLabels(labels)})`);
}

function describeLabels(labels: Set<string>): string {
  return [...labels].map((l) => `"${l}"`).join(", ");
}

function expected(role: KeyFileRole): string {
  return role === "private key" ? "a private key" : role === "root CA" ? "the root CA certificate" : "the thing's certificate";
}

/** One certificate as RFC 7468 PEM. */
export function certificatePem(der: Buffer): string {
  return pem("CERTIFICATE", der);
}

/** RFC 7468 PEM: 64-column base64, LF line ends. */
function pem(label: string, der: Buffer): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------------
// Recognising binary containers by their first bytes, the way file(1) does: enough to name them
// in a refusal, nothing is decoded from them.

/** The DER encodings of the OIDs pkcs7-data (1.2.840.113549.1.7.1) and pkcs7-signedData (.7.2). */
const PKCS7_DATA = Buffer.from("06092a864886f70d010701", "hex");
const PKCS7_SIGNED = Buffer.from("06092a864886f70d010702", "hex");

/** Length of a DER header (tag + length bytes) at `offset`, or undefined if it is not one. */
function headerLength(der: Buffer, offset: number): number | undefined {
  const first = der[offset + 1];
  if (first === undefined) return undefined;
  // < 0x80: short form; 0x80: BER's indefinite length, which some PKCS#12 writers use
  if (first <= 0x80) return 2;
  const count = first & 0x7f;
  return count >= 1 && count <= 4 ? 2 + count : undefined;
}

/** PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (data or signedData), ... } */
function isPkcs12(der: Buffer): boolean {
  const outer = headerLength(der, 0);
  if (outer === undefined || !der.subarray(outer, outer + 3).equals(Buffer.from([0x02, 0x01, 0x03]))) return false;
  const inner = outer + 3;
  if (der[inner] !== 0x30) return false;
  const oid = inner + (headerLength(der, inner) ?? 0);
  const found = der.subarray(oid, oid + PKCS7_DATA.length);
  return found.equals(PKCS7_DATA) || found.equals(PKCS7_SIGNED);
}

/** ContentInfo ::= SEQUENCE { contentType OID (signedData), ... }: what .p7b files hold. */
function isPkcs7(der: Buffer): boolean {
  const outer = headerLength(der, 0);
  return outer !== undefined && der.subarray(outer, outer + PKCS7_SIGNED.length).equals(PKCS7_SIGNED);
}
