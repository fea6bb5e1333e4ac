/**
 * Identifying values hidden where a careless de-identifier looks past them, run through the function
 * the node uses (deidentifyFile) with the default settings: each of these tests failed before its fix.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deidentifyFile, type DeidFileResult } from '../../src/deid/deidentify-file.js';
import { DEFAULT_DEID_SETTINGS } from '../../src/deid/engine.js';
import { encodePart10Header } from '../../src/dicom/part10.js';
import { Pseudonymizer } from '../../src/deid/pseudonyms.js';
import { scratchDir } from '../helpers/scratch.js';
import { definedItem, elementHeader, encodeElement } from '../helpers/synthetic-dicom.js';

const PSEUDONYMS = new Pseudonymizer('the secret of the leak hunt tests');
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';
const SOP = '1.2.826.0.1.3680043.99.600.1';
/** A tag of an even (standard) group that no edition of PS3.6 defines: an attribute newer than Gantry. */
const UNKNOWN_STANDARD_TAG = 0x00981234;

/** The elements of an explicit VR little endian dataset, sorted by tag. */
function dataset(parts: Buffer[]): Buffer {
  const tagOf = (bytes: Buffer) => ((bytes.readUInt16LE(0) << 16) | bytes.readUInt16LE(2)) >>> 0;
  return Buffer.concat([...parts].sort((a, b) => tagOf(a) - tagOf(b)));
}

function patient(): Buffer[] {
  return [
    encodeElement(0x00080016, 'UI', CT_IMAGE),
    encodeElement(0x00080018, 'UI', SOP),
    encodeElement(0x00080060, 'CS', 'CT'),
    encodeElement(0x00100010, 'PN', 'Zabriskie^Quentin'),
    encodeElement(0x00100020, 'LO', 'MRN600'),
  ];
}

/** De-identifies a Part 10 file holding `body`; the output's bytes, or undefined when held back. */
function deidentified(name: string, body: Buffer, transferSyntaxUid = EXPLICIT_LE): { result: DeidFileResult; written: string | undefined } {
  const dir = scratchDir(name);
  writeFileSync(join(dir, 'in.dcm'), Buffer.concat([encodePart10Header({ mediaStorageSopClassUid: CT_IMAGE, mediaStorageSopInstanceUid: SOP, transferSyntaxUid }), body]));
  const result = deidentifyFile(join(dir, 'in.dcm'), join(dir, 'out.dcm'), { settings: DEFAULT_DEID_SETTINGS, pseudonyms: PSEUDONYMS });
  return { result, written: result.kind === 'quarantined' ? undefined : readFileSync(join(dir, 'out.dcm')).toString('latin1') };
}

// PS3.5 6.2.2: a sequence sent as UN holds implicit VR items. Some nodes relabel a sequence UN and
// leave its items explicit; Gantry cannot read those, so it must not pass them on (PS3.15 E.1.1: the
// names and UIDs the items hold are de-identified wherever they are). For a tag the dictionary calls
// SQ that was done; for a tag it does not know (an attribute newer than it), the value was kept.
test('a UN value of an unknown attribute that holds unreadable items is not passed on', () => {
  const originalUid = '1.2.826.0.1.3680043.99.600.77';
  const items = definedItem(Buffer.concat([encodeElement(0x00100010, 'PN', 'Zabriskie^Quentin'), encodeElement(0x00081155, 'UI', originalUid)]));
  const { result, written } = deidentified('leak-un-items', dataset([...patient(), elementHeader(UNKNOWN_STANDARD_TAG, 'UN', items.length), items]));
  if (written === undefined) return; // held back: fine too
  assert.equal(result.kind, 'deidentified');
  assert.ok(!written.includes('Zabriskie'), "the patient's name leaves inside the unread items");
  assert.ok(!written.includes(originalUid), 'an original UID leaves inside the unread items');
});
