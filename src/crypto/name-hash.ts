/**
 * OpenSSL's subject name hash (`X509_NAME_hash`, what `openssl x509 -hash` prints and `c_rehash`
 * names files by): a CRL for issuer I lives in a directory as `<hash of I>.r0`. Erlang's ssl
 * finds CRLs the same way (`ssl_crl_hash_dir`, `public_key:short_name_hash/1`), which is how
 * RabbitMQ nodes read the hub's CRL (docs/scaling.md).
 *
 * The hash (OpenSSL crypto/x509/x_name.c `x509_name_canon`, `X509_NAME_hash_ex`): each
 * attribute value is made canonical — decoded to text, ASCII letters lowercased, leading and
 * trailing white space removed, inner runs of white space made one space — and encoded as a
 * UTF8String; each RDN is DER-encoded as its SET; the SETs are concatenated (no outer
 * SEQUENCE); SHA-1 of that; the first four bytes read as a little-endian 32-bit number, in hex.
 * Values that are not strings (rare in a subject) are kept as they are.
 */
import { createHash, X509Certificate } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate, Name } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";
import { CryptoError } from "./errors.ts";

/** The text of a string-typed ASN.1 value, or undefined for a value of another type. */
function stringValue(block: asn1js.AsnType): string | undefined {
  if (block instanceof asn1js.BmpString || block instanceof asn1js.UniversalString) return block.valueBlock.value;
  if (block instanceof asn1js.Utf8String) return block.valueBlock.value;
  if (
    block instanceof asn1js.PrintableString ||
    block instanceof asn1js.IA5String ||
    block instanceof asn1js.TeletexString ||
    block instanceof asn1js.VisibleString ||
    block instanceof asn1js.NumericString
  ) {
    return block.valueBlock.value;
  }
  return undefined;
}

/** OpenSSL's canonical form of one value: ASCII lowercased, outer white space gone, inner runs one space. */
function canonicalText(text: string): string {
  return text
    .replace(/[A-Z]/g, (c) => c.toLowerCase())
    .replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "")
    .replace(/[ \t\n\v\f\r]+/g, " ");
}

/** The hash of a DER-encoded Name, as 8 lowercase hex digits. */
export function nameHash(nameDer: Uint8Array): string {
  const name = AsnConvert.parse(nameDer, Name);
  const canon: Buffer[] = [];
  for (const rdn of name) {
    const set = new asn1js.Set({
      value: rdn.map((attribute) => {
        const raw = asn1js.fromBER(AsnConvert.serialize(attribute.value)).result;
        const text = stringValue(raw);
        const value = text === undefined ? raw : new asn1js.Utf8String({ value: canonicalText(text) });
        return new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: attribute.type }), value] });
      }),
    });
    canon.push(Buffer.from(set.toBER(false)));
  }
  const digest = createHash("sha1").update(Buffer.concat(canon)).digest();
  return digest.readUInt32LE(0).toString(16).padStart(8, "0");
}

/** The subject name hash of a PEM certificate (`openssl x509 -hash -noout`). Throws CryptoError for what is not a certificate. */
export function subjectNameHash(certPem: string): string {
  let der: Buffer;
  try {
    der = new X509Certificate(certPem).raw;
  } catch (err) {
    throw new CryptoError(`not a certificate: ${(err as Error).message}`);
  }
  const cert = AsnConvert.parse(der, Certificate);
  return nameHash(new Uint8Array(AsnConvert.serialize(cert.tbsCertificate.subject)));
}
