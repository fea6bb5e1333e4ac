/**
 * One spelling per IP address, so that an address written in config (dicom.allowedCallers,
 * query.sourceCallers) matches the peer's address as the socket reports it: a listener on "::" reports
 * an IPv4 peer as "::ffff:10.0.0.5", and an IPv6 address has many spellings (upper case, leading zeros,
 * zeros written out) of which the socket uses one.
 */
import { isIP } from 'node:net';

export function canonicalAddress(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1] as string;
  if (isIP(address) !== 6) return address;
  // A link-local address carries its zone ("fe80::1%eth0", as the socket reports it), which the URL
  // parser refuses: the zone is kept as it is, the address before it is put in canonical form.
  const zoneAt = address.indexOf('%');
  if (zoneAt >= 0) return `${canonicalAddress(address.slice(0, zoneAt))}${address.slice(zoneAt)}`;
  // The WHATWG URL parser writes an IPv6 host in its one canonical form (RFC 5952): lower case, zeros
  // compressed; an IPv4-mapped address comes out as two hex groups.
  const compressed = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const hexMapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (!hexMapped) return compressed;
  const [high, low] = [Number.parseInt(hexMapped[1] as string, 16), Number.parseInt(hexMapped[2] as string, 16)];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}
