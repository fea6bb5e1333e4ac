/**
 * Under retainUIDs a redacted instance gets a UID of its own; references to it in its study follow
 * (issue 7). Through the node: an instance that references the ultrasound arrives, is de-identified
 * and forwarded first; then the ultrasound arrives and is redacted (renamed); the referencing instance
 * is de-identified and forwarded again, its reference now naming the renamed ultrasound.
 */
import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseFile } from '../../src/dicom/dataset-tree.js';
import { elementText } from '../../src/dicom/element-value.js';
import { storescu } from '../helpers/dcmtk.js';
import { startStorescp, waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { writeUltrasound } from '../helpers/pixel-images.js';
import { scratchDir } from '../helpers/scratch.js';
import { indexedRows } from '../helpers/stored.js';
import { encodeElement, newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

const SOP_INSTANCE_UID = 0x00080018;
const STUDY_INSTANCE_UID = 0x0020000d;
const REFERENCED_IMAGE_SEQUENCE = 0x00081140;
const REFERENCED_SOP_INSTANCE_UID = 0x00081155;

/** A file's SOP Instance UID, and the first Referenced SOP Instance UID of its Referenced Image
 * Sequence (if any). */
function identity(path: string): { sop: string; study: string; reference?: string } {
  const parsed = parseFile(path);
  try {
    const text = (elements: typeof parsed.elements, tag: number) => elementText(elements.find((element) => element.tag === tag), parsed.source, false)?.replace(/[\0 ]+$/, '');
    const sequence = parsed.elements.find((element) => element.tag === REFERENCED_IMAGE_SEQUENCE);
    const item = sequence?.items?.[0];
    const reference = item ? text(item.elements, REFERENCED_SOP_INSTANCE_UID) : undefined;
    return { sop: text(parsed.elements, SOP_INSTANCE_UID) ?? '', study: text(parsed.elements, STUDY_INSTANCE_UID) ?? '', ...(reference ? { reference } : {}) };
  } finally {
    parsed.close();
  }
}

test('under retainUIDs, a reference to a redacted instance follows its new UID, even when the referencing instance went first', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp'))) return;
  const dir = scratchDir('redaction-references');
  const ultrasound = join(dir, 'us.dcm');
  writeUltrasound(ultrasound);
  const original = identity(ultrasound);
  // An image of the same study that references the ultrasound (as a derived image or a report would).
  const itemBody = Buffer.concat([encodeElement(0x00081150, 'UI', '1.2.840.10008.5.1.4.1.1.3.1'), encodeElement(REFERENCED_SOP_INSTANCE_UID, 'UI', original.sop)]);
  const itemHeader = Buffer.alloc(8);
  itemHeader.writeUInt16LE(0xfffe, 0);
  itemHeader.writeUInt16LE(0xe000, 2);
  itemHeader.writeUInt32LE(itemBody.length, 4);
  const referencing = join(dir, 'referencing.dcm');
  const { sopInstanceUid: referencingUid } = await writeSyntheticFile(referencing, {
    studyInstanceUid: original.study,
    seriesInstanceUid: newUid(),
    patientId: 'PIX-0001',
    patientName: 'Burned^In',
    rows: 16,
    columns: 16,
    extra: [[REFERENCED_IMAGE_SEQUENCE, 'SQ', Buffer.concat([itemHeader, itemBody])]],
  });

  const zones = join(dir, 'zones.yaml');
  writeFileSync(zones, 'zones:\n  - { name: acme band, match: { Manufacturer: ACME }, rects: [[0, 0, 80, 8]] }\n');
  const received = join(dir, 'received');
  const scp = await startStorescp(received);
  t.after(() => scp.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    deid: { options: ['retainUIDs', 'cleanPixelData'], pixelZones: zones },
    forward: { stableSeconds: 1, destinations: [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port }] },
  });
  t.after(() => gantry.stop());
  const arrived = () => readdirSync(received).map((name) => ({ path: join(received, name), at: statSync(join(received, name)).mtimeMs, ...identity(join(received, name)) }));

  const first = await storescu(gantry.port, gantry.aeTitle, [referencing]);
  assert.equal(first.acknowledged.length, 1, first.output.slice(-1000));
  await waitUntil('the referencing instance forwarded', 30_000, () => arrived().length === 1);
  assert.equal(arrived()[0]?.reference, original.sop, 'before the ultrasound is redacted, the reference is the original UID');

  const second = await storescu(gantry.port, gantry.aeTitle, [ultrasound]);
  assert.equal(second.acknowledged.length, 1, second.output.slice(-1000));
  await waitUntil('the ultrasound and the referencing instance again forwarded', 60_000, () => scp.requests() >= 3 && indexedRows(gantry.storagePath).every((row) => row.state === 'forwarded'));

  const files = arrived();
  const redacted = files.find((file) => file.reference === undefined);
  assert.ok(redacted, 'the ultrasound arrived');
  assert.notEqual(redacted.sop, original.sop, 'the redacted ultrasound has a UID of its own');
  assert.equal(redacted.study, original.study, 'retainUIDs keeps the study');
  const latest = files.filter((file) => file.sop === referencingUid).sort((a, b) => b.at - a.at)[0];
  assert.ok(latest, 'the referencing instance arrived');
  assert.equal(latest.reference, redacted.sop, 'its reference follows the redacted ultrasound');
  assert.equal(scp.requests(), 3, 'the referencing instance was sent twice, the ultrasound once');
});
