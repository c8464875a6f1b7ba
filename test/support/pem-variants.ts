/**
 * A thing's three identity files as people bring them from other systems, made from one good
 * identity with the openssl command line (so each variant is what a real tool writes):
 *
 *   normalisable   CRLF, a UTF-8 BOM, UTF-16 text, trailing blanks, `openssl x509 -text` and `openssl pkcs12
 *                  -nodes` text around the blocks, base64 on one line or at 76 columns, DER
 *                  files, PKCS#1 / PKCS#8 / SEC1 keys, certificate and key in one file
 *   refused        PKCS#12, PKCS#7 (PEM and DER), encrypted keys (PKCS#8 PEM and DER,
 *                  traditional), a certificate where the key belongs and the other way round, a
 *                  public key, a CSR, empty and blank files, damaged base64, a lone BEGIN line,
 *                  binary junk
 *
 * A variant replaces some of the files; `refused` says which file must be named and what the
 * one line must say.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type IdentityFile = "ca" | "cert" | "key";

export interface SourceIdentity {
  caPem: string;
  certPem: string;
  /** the key as the distribution has it (PKCS#1 for RSA things, PKCS#8 for EC things) */
  keyPem: string;
  keyType: "rsa" | "ec";
}

export interface Variant {
  name: string;
  files: Partial<Record<IdentityFile, Uint8Array | string>>;
  /** absent: the variant must be accepted and work */
  refused?: { file: IdentityFile; says: RegExp };
}

/** Runs openssl with `input` on stdin; its stdout, or a thrown error with its stderr. */
export function openssl(args: string[], input?: string | Uint8Array): Buffer {
  const run = Bun.spawnSync(["openssl", ...args], { stdin: input === undefined ? "ignore" : new Blob([input]), stdout: "pipe", stderr: "pipe" });
  if (run.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${run.stderr.toString()}`);
  return Buffer.from(run.stdout);
}

const text = (s: string) => Buffer.from(s);
const crlf = (s: string) => s.replace(/\r?\n/g, "\r\n");
const withBom = (s: string) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(s)]);
const trailingBlanks = (s: string) =>
  s
    .split("\n")
    .map((l) => (l ? `${l}  \t ` : l))
    .join("\n");

/** Re-wraps every block's base64 at `width` columns (Infinity: one line). */
function rewrap(pem: string, width: number): string {
  return pem.replace(/(-----BEGIN [A-Z0-9 ]+-----)\n([\s\S]*?)\n(-----END [A-Z0-9 ]+-----)/g, (_, begin: string, body: string, end: string) => {
    const flat = body.replace(/\s/g, "");
    const lines = width === Infinity ? [flat] : (flat.match(new RegExp(`.{1,${width}}`, "g")) ?? []);
    return `${begin}\n${lines.join("\n")}\n${end}`;
  });
}

export function identityVariants(source: SourceIdentity): Variant[] {
  const tmp = mkdtempSync("/tmp/flashlex-pem-variants-");
  try {
    const file = (name: string, content: string | Uint8Array) => {
      const path = join(tmp, name);
      writeFileSync(path, content);
      return path;
    };
    const certFile = file("cert.pem", source.certPem);
    const keyFile = file("key.pem", source.keyPem);
    const caFile = file("ca.pem", source.caPem);
    const pkcs8Pem = openssl(["pkey", "-in", keyFile]).toString();
    const p12 = openssl(["pkcs12", "-export", "-in", certFile, "-inkey", keyFile, "-passout", "pass:secret"]);
    const p12Plain = file("plain.p12", openssl(["pkcs12", "-export", "-in", certFile, "-inkey", keyFile, "-passout", "pass:"]));
    const bagCert = openssl(["pkcs12", "-in", p12Plain, "-clcerts", "-nokeys", "-passin", "pass:"]).toString();
    const bagKey = openssl(["pkcs12", "-in", p12Plain, "-nocerts", "-nodes", "-passin", "pass:"]).toString();
    const traditional = source.keyType === "rsa" ? "rsa" : "ec";
    const encryptedTraditional = openssl(
      source.keyType === "rsa"
        ? ["rsa", "-in", keyFile, "-aes256", "-traditional", "-passout", "pass:secret"]
        : ["ec", "-in", keyFile, "-aes256", "-passout", "pass:secret"],
    );

    const accepted: Variant[] = [
      { name: "CRLF line ends in all three files", files: { ca: text(crlf(source.caPem)), cert: text(crlf(source.certPem)), key: text(crlf(source.keyPem)) } },
      { name: "a UTF-8 BOM on all three files", files: { ca: withBom(source.caPem), cert: withBom(source.certPem), key: withBom(source.keyPem) } },
      {
        name: 'UTF-16 with a BOM (Windows Notepad\'s "Unicode") for the certificate',
        files: { cert: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(crlf(source.certPem), "utf16le")]) },
      },
      {
        name: "trailing blanks on every line",
        files: { ca: text(trailingBlanks(source.caPem)), cert: text(trailingBlanks(source.certPem)), key: text(trailingBlanks(source.keyPem)) },
      },
      {
        name: "`openssl x509 -text` output, and a note after the block",
        files: {
          ca: Buffer.concat([openssl(["x509", "-in", caFile, "-text"]), text("# downloaded from the hub\n")]),
          cert: openssl(["x509", "-in", certFile, "-text"]),
        },
      },
      { name: "`openssl pkcs12 -nodes` output (Bag Attributes before the blocks)", files: { cert: text(bagCert), key: text(bagKey) } },
      {
        name: "base64 on one long line",
        files: { ca: text(rewrap(source.caPem, Infinity)), cert: text(rewrap(source.certPem, Infinity)), key: text(rewrap(source.keyPem, Infinity)) },
      },
      {
        name: "base64 at 76 columns",
        files: { ca: text(rewrap(source.caPem, 76)), cert: text(rewrap(source.certPem, 76)), key: text(rewrap(source.keyPem, 76)) },
      },
      {
        name: "DER certificate and DER root CA",
        files: { ca: openssl(["x509", "-in", caFile, "-outform", "DER"]), cert: openssl(["x509", "-in", certFile, "-outform", "DER"]) },
      },
      { name: "DER PKCS#8 key", files: { key: openssl(["pkey", "-in", keyFile, "-outform", "DER"]) } },
      {
        name: `DER ${source.keyType === "rsa" ? "PKCS#1" : "SEC1"} key`,
        files: { key: openssl([traditional, "-in", keyFile, "-outform", "DER", ...(source.keyType === "rsa" ? ["-traditional"] : [])]) },
      },
      { name: "PKCS#8 PEM key", files: { key: text(pkcs8Pem) } },
      source.keyType === "rsa"
        ? { name: "PKCS#1 PEM key (`openssl genrsa -traditional`)", files: { key: openssl(["rsa", "-in", keyFile, "-traditional"]) } }
        : {
            name: "SEC1 key after its EC PARAMETERS block (`openssl ecparam -genkey`)",
            files: { key: Buffer.concat([openssl(["ecparam", "-name", "prime256v1"]), openssl(["ec", "-in", keyFile])]) },
          },
      { name: "certificate and key together in both files", files: { cert: text(source.certPem + pkcs8Pem), key: text(source.certPem + pkcs8Pem) } },
    ];

    const refused: Variant[] = [
      {
        name: "PKCS#12 where the certificate belongs",
        files: { cert: p12 },
        refused: { file: "cert", says: /PKCS#12 bundle \(\.p12\/\.pfx\).*convert it with: openssl pkcs12 -in \S+ -clcerts -nokeys -out certificate\.pem/ },
      },
      {
        name: "PKCS#12 where the key belongs",
        files: { key: p12 },
        refused: { file: "key", says: /PKCS#12 bundle.*convert it with: openssl pkcs12 -in \S+ -nocerts -nodes -out key\.pem/ },
      },
      {
        name: "PKCS#7 (PEM) where the certificate belongs",
        files: { cert: openssl(["crl2pkcs7", "-nocrl", "-certfile", certFile]) },
        refused: { file: "cert", says: /PKCS#7 bundle \(\.p7b\).*convert it with: openssl pkcs7 -print_certs -in \S+ -out certificates\.pem/ },
      },
      {
        name: "PKCS#7 (DER) where the root CA belongs",
        files: { ca: openssl(["crl2pkcs7", "-nocrl", "-certfile", caFile, "-outform", "DER"]) },
        refused: { file: "ca", says: /PKCS#7 bundle.*openssl pkcs7 -inform DER -print_certs/ },
      },
      {
        name: "an encrypted PKCS#8 key (PEM)",
        files: { key: openssl(["pkey", "-in", keyFile, "-aes256", "-passout", "pass:secret"]) },
        refused: { file: "key", says: /the private key is encrypted.*convert it with: openssl pkey -in/ },
      },
      {
        name: "an encrypted PKCS#8 key (DER)",
        files: { key: openssl(["pkcs8", "-topk8", "-in", keyFile, "-v2", "aes256", "-outform", "DER", "-passout", "pass:secret"]) },
        refused: { file: "key", says: /the private key is encrypted/ },
      },
      {
        name: "an encrypted traditional key (Proc-Type: 4,ENCRYPTED)",
        files: { key: encryptedTraditional },
        refused: { file: "key", says: /the private key is encrypted/ },
      },
      {
        name: "the certificate where the key belongs",
        files: { key: text(source.certPem) },
        refused: { file: "key", says: /holds a certificate, not a private key/ },
      },
      {
        name: "the key where the certificate belongs",
        files: { cert: text(source.keyPem) },
        refused: { file: "cert", says: /holds a private key, not a certificate/ },
      },
      { name: "the key where the root CA belongs", files: { ca: text(pkcs8Pem) }, refused: { file: "ca", says: /holds a private key, not a certificate/ } },
      {
        name: "the public key where the private key belongs",
        files: { key: openssl(["pkey", "-in", keyFile, "-pubout"]) },
        refused: { file: "key", says: /holds a public key, not the private key/ },
      },
      {
        name: "a certificate request where the certificate belongs",
        files: { cert: openssl(["req", "-new", "-key", keyFile, "-subj", "/CN=x"]) },
        refused: { file: "cert", says: /certificate request \(CSR\), not a certificate/ },
      },
      { name: "an empty key file", files: { key: text("") }, refused: { file: "key", says: /the file is empty/ } },
      { name: "an empty certificate file", files: { cert: text("") }, refused: { file: "cert", says: /the file is empty/ } },
      { name: "a root CA file of blank lines", files: { ca: text("\n \r\n\t\n") }, refused: { file: "ca", says: /the file is empty/ } },
      {
        name: "damaged base64 in the certificate",
        files: { cert: text(source.certPem.replace(/\n([A-Za-z0-9+/]{10})/, "\n!!!!!!!!!!")) },
        refused: { file: "cert", says: /block is damaged/ },
      },
      {
        name: "a certificate cut off after its BEGIN line",
        files: { cert: text(source.certPem.slice(0, 200)) },
        refused: { file: "cert", says: /has no matching "-----END" line/ },
      },
      {
        name: "binary junk where the key belongs",
        files: { key: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05, 0xff, 0x00]) },
        refused: { file: "key", says: /a DER file that is not a private key/ },
      },
    ];
    return [...accepted, ...refused];
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Keys FlashLex does not sign with, each refused naming the key file. */
export function unsupportedKeys(): { name: string; keyPem: string; says: RegExp }[] {
  const gen = (args: string[]) => openssl(["genpkey", ...args]).toString();
  return [
    {
      name: "Ed25519",
      keyPem: gen(["-algorithm", "ed25519"]),
      says: /an Ed25519 key is not supported: FlashLex uses RSA keys of 2048 bits or more, EC P-256 or EC P-384 keys/,
    },
    { name: "EC P-521", keyPem: gen(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"]), says: /an EC key on curve secp521r1 is not supported/ },
    {
      name: "EC secp256k1",
      keyPem: gen(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"]),
      says: /could not be parsed: the key is damaged, or of a kind this build cannot read/,
    },
    {
      name: "DSA",
      keyPem: openssl(
        ["genpkey", "-paramfile", "/dev/stdin"],
        openssl(["genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:1024"]),
      ).toString(),
      says: /(a DSA key is not supported|could not be parsed)/,
    },
    { name: "RSA 1024", keyPem: gen(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]), says: /an RSA key of 1024 bits is not supported/ },
  ];
}
