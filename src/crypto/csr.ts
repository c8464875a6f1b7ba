/**
 * Certificate signing requests (PKCS#10, RFC 2986): the thing makes one with its own key, so its
 * private key never leaves it (enrolment, renewal); the hub reads one and decides whether to sign.
 *
 * What the hub takes from a CSR is its public key and nothing else: the subject it issues is its
 * own (`issueThingCertificate`), and requested extensions (a SAN, a CA flag, key usages) are never
 * copied. The CSR's CN is still checked (`readCsr` gives it; the caller compares it with the name
 * it assigns), so a device cannot ask for a certificate in another thing's name and get one by
 * accident of a later change, and its self-signature proves the requester holds the private key
 * (RFC 2986 §3, "proof of possession").
 */
import { createPrivateKey, createPublicKey, type KeyObject, type webcrypto as wc } from "node:crypto";
import { CryptoError } from "./errors.ts";
import { describeKeyKind, loadPrivateKey, pemBlocks, tokenAlgorithmFor } from "./keys.ts";
import { x509 } from "./peculiar.ts";

const webcrypto = globalThis.crypto;

/** The most PEM text of a CSR read: a 4096-bit RSA CSR is about 1.7 KB; anything far bigger is not one. */
export const MAX_CSR_PEM_CHARS = 16 * 1024;

/** What `readCsr` found in a CSR whose signature verified and whose key FlashLex accepts. */
export interface CheckedCsr {
  /** the subject's one commonName */
  commonName: string;
  /** the requested public key, SPKI PEM */
  publicKeyPem: string;
  /** "an RSA key of 2048 bits", for logs */
  keyKind: string;
}

/** The WebCrypto import and signing parameters for a thing key (RSA >= 2048: PKCS#1 v1.5 SHA-256; EC: ECDSA with the curve's hash). */
function signingParameters(key: KeyObject): { importAlg: wc.RsaHashedImportParams | wc.EcKeyImportParams; signAlg: wc.Algorithm | wc.EcdsaParams } {
  const alg = tokenAlgorithmFor(key); // throws CryptoError for a key FlashLex does not use
  if (alg === "RS256") return { importAlg: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, signAlg: { name: "RSASSA-PKCS1-v1_5" } };
  const p384 = alg === "ES384";
  return {
    importAlg: { name: "ECDSA", namedCurve: p384 ? "P-384" : "P-256" },
    signAlg: { name: "ECDSA", hash: p384 ? "SHA-384" : "SHA-256" } as wc.EcdsaParams,
  };
}

/**
 * A PEM CSR (`BEGIN CERTIFICATE REQUEST`) for `privateKeyPem` (PKCS#1, SEC1 or PKCS#8; RSA >= 2048
 * or EC P-256/P-384), subject `CN=commonName`, signed with that key. Throws CryptoError for a
 * key of another kind or an empty name.
 */
export async function createCsr(opts: { privateKeyPem: string; commonName: string }): Promise<string> {
  if (!opts.commonName) throw new CryptoError("a CSR needs a common name");
  const privateKey = loadPrivateKey(opts.privateKeyPem);
  const { importAlg, signAlg } = signingParameters(privateKey);
  const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const keys = {
    privateKey: await webcrypto.subtle.importKey("pkcs8", pkcs8, importAlg, false, ["sign"]),
    publicKey: await webcrypto.subtle.importKey("spki", spki, importAlg, true, ["verify"]),
  } as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    // JSON form: a name holding "," or "=" stays one attribute
    { name: [{ CN: [opts.commonName] }], keys, signingAlgorithm: signAlg },
    webcrypto as Crypto,
  );
  const pem = csr.toString("pem").replace(/\r\n/g, "\n");
  return pem.endsWith("\n") ? pem : `${pem}\n`;
}

/**
 * Reads and checks a PEM CSR (RFC 2986): exactly one `CERTIFICATE REQUEST` block, at most
 * MAX_CSR_PEM_CHARS; a subject with exactly one CN; a public key FlashLex accepts (RSA of 2048
 * bits or more, EC P-256 or P-384: nothing weaker, no DSA, no Ed25519); a self-signature that
 * verifies with that key. The key is judged before the signature is checked, so a weak key is
 * refused for its weakness. Throws CryptoError (kind `data`: the request, not the hub's
 * configuration, is at fault) with one line saying which rule failed; never echoes the CSR.
 */
export async function readCsr(pem: unknown): Promise<CheckedCsr> {
  const refuse = (why: string): never => {
    throw new CryptoError(`the CSR was refused: ${why}`, { kind: "data" });
  };
  if (typeof pem !== "string" || pem.length === 0) return refuse("it is missing (send the PEM text of a PKCS#10 request)");
  if (pem.length > MAX_CSR_PEM_CHARS) return refuse(`it is longer than ${MAX_CSR_PEM_CHARS} characters`);
  const blocks = pemBlocks(pem).filter((b) => b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST");
  if (blocks.length !== 1) return refuse(blocks.length === 0 ? "no CERTIFICATE REQUEST block" : "more than one CERTIFICATE REQUEST block");
  let csr: InstanceType<typeof x509.Pkcs10CertificateRequest>;
  try {
    // peculiar reads "BEGIN CERTIFICATE REQUEST"; the older "NEW" label holds the same DER
    csr = new x509.Pkcs10CertificateRequest(blocks[0]!.text.replace(/NEW CERTIFICATE REQUEST/g, "CERTIFICATE REQUEST"));
  } catch {
    return refuse("it is not a valid PKCS#10 request");
  }
  const commonNames = csr.subjectName.getField("CN");
  if (commonNames.length !== 1) return refuse(`its subject must hold exactly one CN (it has ${commonNames.length})`);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: "der", type: "spki" });
  } catch {
    return refuse("its public key cannot be read");
  }
  try {
    tokenAlgorithmFor(key);
  } catch {
    return refuse(`${describeKeyKind(key)} is too weak or not supported (RSA of 2048 bits or more, EC P-256 or P-384)`);
  }
  let verified = false;
  try {
    verified = await csr.verify(webcrypto as Crypto);
  } catch {
    verified = false;
  }
  if (!verified) refuse("its signature does not verify with its own key (it was altered, or not signed by the key it names)");
  return { commonName: commonNames[0]!, publicKeyPem: key.export({ type: "spki", format: "pem" }) as string, keyKind: describeKeyKind(key) };
}

/** The SPKI PEM of a private key's public half: what the device compares a returned certificate with. */
export function publicKeyPemOf(privateKeyPem: string): string {
  return createPublicKey(createPrivateKey(privateKeyPem)).export({ type: "spki", format: "pem" }) as string;
}
