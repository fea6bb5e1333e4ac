/**
 * CMS EnvelopedData (RFC 5652) for the Encrypted Attributes Sequence (PS3.15 E.1.2, PS3.3
 * C.12.1.1.4.1): a random AES-256-CBC content key encrypts the content; the key is transported to the
 * recipient's certificate with RSAES-OAEP (RFC 3560, SHA-1 and MGF1-SHA-1, the default parameters);
 * the recipient is named by the certificate's issuer and serial number. `openssl cms -decrypt` reads
 * what `envelope` writes; `openEnvelope` reads it back.
 *
 * (RSA PKCS #1 v1.5 key transport is not used: Node 20 refuses to decrypt it, CVE-2023-46809.)
 */
import { constants, createCipheriv, createDecipheriv, privateDecrypt, publicEncrypt, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';

const OID = {
  data: '1.2.840.113549.1.7.1',
  envelopedData: '1.2.840.113549.1.7.3',
  rsaesOaep: '1.2.840.113549.1.1.7',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
} as const;

// --- DER encoding ------------------------------------------------------------------------------

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content]);
}

const sequence = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]) => tlv(0x31, Buffer.concat(parts));
const octetString = (content: Buffer) => tlv(0x04, content);
const integer = (value: number) => tlv(0x02, Buffer.from([value]));

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes: number[] = [40 * (parts[0] as number) + (parts[1] as number)];
  for (const part of parts.slice(2)) {
    const chunk: number[] = [part & 0x7f];
    for (let rest = Math.floor(part / 128); rest > 0; rest = Math.floor(rest / 128)) chunk.unshift((rest & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

// --- DER reading (what certificates and envelopes need) -------------------------------------

interface Node {
  tag: number;
  /** The whole TLV. */
  raw: Buffer;
  content: Buffer;
}

function read(buffer: Buffer, offset = 0): Node {
  const tag = buffer[offset] as number;
  let size = buffer[offset + 1] as number;
  let header = 2;
  if (size & 0x80) {
    const count = size & 0x7f;
    size = 0;
    for (let i = 0; i < count; i += 1) size = size * 256 + (buffer[offset + 2 + i] as number);
    header += count;
  }
  const end = offset + header + size;
  if (end > buffer.length) throw new Error('malformed DER: a value runs past its container');
  return { tag, raw: buffer.subarray(offset, end), content: buffer.subarray(offset + header, end) };
}

function children(node: Node): Node[] {
  const out: Node[] = [];
  for (let offset = 0; offset < node.content.length; ) {
    const child = read(node.content, offset);
    out.push(child);
    offset += child.raw.length;
  }
  return out;
}

function child(node: Node, index: number): Node {
  const found = children(node)[index];
  if (!found) throw new Error('malformed DER: an expected field is missing');
  return found;
}

/** The issuer Name and serialNumber of a certificate, as DER (for IssuerAndSerialNumber). */
function issuerAndSerial(certificate: X509Certificate): Buffer {
  const tbs = child(read(certificate.raw), 0);
  // tbsCertificate: [0] version (optional), serialNumber, signature, issuer, ...
  const fields = children(tbs);
  const start = fields[0]?.tag === 0xa0 ? 1 : 0;
  const serial = fields[start];
  const issuer = fields[start + 2];
  if (!serial || !issuer) throw new Error('the recipient certificate has no issuer or serial number');
  return sequence(issuer.raw, serial.raw);
}

// --- EnvelopedData ----------------------------------------------------------------------------

/** Encrypts `content` for the holder of `certificatePem`'s private key; returns DER ContentInfo. */
export function envelope(content: Buffer, certificatePem: string | Buffer): Buffer {
  const certificate = new X509Certificate(certificatePem);
  if (certificate.publicKey.asymmetricKeyType !== 'rsa') throw new Error('the recipient certificate must hold an RSA key');
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const encrypted = Buffer.concat([cipher.update(content), cipher.final()]);
  const encryptedKey = publicEncrypt({ key: certificate.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, key);
  const recipient = sequence(
    integer(0), // version 0: rid is IssuerAndSerialNumber
    issuerAndSerial(certificate),
    // RSAES-OAEP with the default parameters: an empty RSAES-OAEP-params (RFC 4055 4.1).
    sequence(oid(OID.rsaesOaep), sequence()),
    octetString(encryptedKey),
  );
  const encryptedContentInfo = sequence(oid(OID.data), sequence(oid(OID.aes256Cbc), octetString(iv)), tlv(0x80, encrypted));
  const envelopedData = sequence(integer(0), set(recipient), encryptedContentInfo);
  return sequence(oid(OID.envelopedData), tlv(0xa0, envelopedData));
}

/** Decrypts DER ContentInfo written by `envelope` (or any CMS tool, with the same algorithms). */
export function openEnvelope(der: Buffer, privateKey: string | Buffer | KeyObject): Buffer {
  const contentInfo = read(der);
  const enveloped = child(child(contentInfo, 1), 0);
  const parts = children(enveloped);
  const recipients = parts.find((part) => part.tag === 0x31);
  const encryptedContentInfo = parts.find((part, index) => part.tag === 0x30 && index > 0);
  if (!recipients || !encryptedContentInfo) throw new Error('not a CMS EnvelopedData');
  const recipient = child(recipients, 0);
  const recipientFields = children(recipient);
  const encryptedKey = recipientFields[recipientFields.length - 1];
  if (!encryptedKey || encryptedKey.tag !== 0x04) throw new Error('the recipient has no encrypted key');
  const key = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, encryptedKey.content);
  const [, algorithm, encrypted] = children(encryptedContentInfo);
  if (!algorithm || !encrypted) throw new Error('the envelope holds no encrypted content');
  const iv = child(algorithm, 1).content;
  const decipher = createDecipheriv('aes-256-cbc', key, iv);
  return Buffer.concat([decipher.update(encrypted.content), decipher.final()]);
}
