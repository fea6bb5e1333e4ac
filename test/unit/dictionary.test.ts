/** The data dictionary (src/dicom/dictionary-data.ts, generated from dcmjs's with PS3.6's corrections)
 * against DCMTK's: a VR read wrong is a value read wrong, and a sequence read as a number or as text
 * in an implicit VR dataset passes its items on unread (found in the PHI fuzz review). */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { vrOf } from '../../src/dicom/dictionary.js';
import { needPeers } from '../helpers/peers.js';

/** DCMTK's dictionary, in the folder of the library version Debian installs (libdcmtk17 for 3.6.7). */
function dcmtkDictionary(): string | undefined {
  const share = '/usr/share';
  const folder = existsSync(share) ? readdirSync(share).find((name) => /^libdcmtk\d+$/.test(name) && existsSync(join(share, name, 'dicom.dic'))) : undefined;
  return folder === undefined ? undefined : join(share, folder, 'dicom.dic');
}

/** DCMTK's VRs that allow several, as the dictionary reads them in implicit VR (dictionary.ts). */
const AMBIGUOUS: Record<string, string> = { ox: 'OW', px: 'OW', xs: 'US', lt: 'OW', up: 'UL', na: 'UN' };

test('every attribute of DCMTK’s dictionary has the VR DCMTK gives it, sequences included', async (t) => {
  const path = dcmtkDictionary();
  if (path === undefined && !(await needPeers(t, '/usr/share/libdcmtk*/dicom.dic'))) return;
  const entries = readFileSync(path as string, 'latin1')
    .split('\n')
    .map((line) => /^\(([0-9A-F]{4}),([0-9A-F]{4})\)\s+(\S+)\s+(\S+)/i.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    // The File Meta Information (group 0002) is read apart from the dataset (part10.ts).
    .filter((match) => match[1] !== '0002');
  assert.ok(entries.length > 4000, `${entries.length} entries read from ${path}`);
  const differing = entries
    .map(([, group, element, vr, keyword]) => ({ tag: `(${group},${element})`, keyword, dcmtk: AMBIGUOUS[vr as string] ?? vr, ours: vrOf(Number.parseInt(`${group}${element}`, 16)) }))
    .filter(({ dcmtk, ours }) => dcmtk !== ours);
  assert.deepEqual(differing, []);
});
