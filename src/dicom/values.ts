/** Small rules of PS3.5 for value bytes, shared by every encoder and decoder. */

/** VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1). */
export const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

/** VRs whose explicit-VR header has a 2-byte length (PS3.5 Table 7.1-2). */
export const SHORT_VRS: ReadonlySet<string> = new Set(['AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FL', 'FD', 'IS', 'LO', 'LT', 'PN', 'SH', 'SL', 'SS', 'ST', 'TM', 'UI', 'UL', 'US']);

/** PS3.5 9.1: UIDs may be padded with one NUL to even length; some senders pad with spaces. */
export function trimUid(text: string): string {
  return text.replace(/[\0 ]+$/, '');
}

/** PS3.5 7.1.1: values have even length; UI pads with NUL, text with a space. */
export function padToEven(text: string, pad: '\0' | ' '): Buffer {
  return Buffer.from(text.length % 2 === 1 ? text + pad : text, 'latin1');
}
