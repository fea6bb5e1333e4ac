/**
 * Association policy against real peers: echoscu, the A-ASSOCIATE-RJ result/source/reason of each
 * refusal (as DCMTK reports them and as they are on the wire), limits, a malformed PDU, the idle
 * timeout, and four storescu processes at once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { storescu } from '../helpers/dcmtk.js';
import { startGantryProcess, type GantryProcess } from '../helpers/gantry.js';
import { needPeers } from '../helpers/peers.js';
import { DCMTK_ENV, run, sleep } from '../helpers/processes.js';
import { RawAssociation } from '../helpers/raw-association.js';
import { countRows, leftoverIncoming } from '../helpers/stored.js';
import { newUid, writeSyntheticFile } from '../helpers/synthetic-dicom.js';

const VERIFICATION = [{ id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] }];

function echoscu(port: number, called: string, calling = 'ECHOSCU') {
  return run('echoscu', ['-v', '-aet', calling, '-aec', called, '127.0.0.1', String(port)], { env: DCMTK_ENV, timeoutMs: 20_000 });
}

describe('associations', () => {
  let dir: string;
  let gantry: GantryProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gantry-assoc-'));
    gantry = await startGantryProcess(dir, {
      dicom: {
        allowedCallers: ['ECHOSCU', 'STORESCU', 'RAW', 'LIMITED@127.0.0.1', 'ELSEWHERE@192.0.2.1'],
        maxAssociations: 6,
        maxAssociationsPerCaller: 4,
        idleTimeoutSeconds: 1,
        artimTimeoutSeconds: 1,
      },
    });
  });
  after(async () => {
    await gantry?.stop();
    if (process.env.DUMP) console.log(gantry.output());
    rmSync(dir, { recursive: true, force: true });
  });

  test('echoscu is answered', async (t) => {
    if (!(await needPeers(t, 'echoscu'))) return;
    const result = await echoscu(gantry.port, gantry.aeTitle);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout + result.stderr, /Received Echo Response \(Success\)/);
  });

  test('a wrong called AE title: rejected permanent, service user, called AE title not recognized', async (t) => {
    if (!(await needPeers(t, 'echoscu'))) return;
    const result = await echoscu(gantry.port, 'NOT_GANTRY');
    assert.notEqual(result.code, 0);
    assert.match(result.stdout + result.stderr, /Rejected Permanent.*\n?.*Service User.*\n?.*Called AE Title Not Recognized/i);
    const raw = await RawAssociation.open(gantry.port);
    assert.deepEqual(await raw.associate({ called: 'NOT_GANTRY', calling: 'RAW', contexts: VERIFICATION }), {
      kind: 'reject',
      reject: { result: 1, source: 1, reason: 7 },
    });
    raw.destroy();
  });

  test('a caller not on the allow-list, or from another host: calling AE title not recognized', async (t) => {
    if (!(await needPeers(t, 'echoscu'))) return;
    const result = await echoscu(gantry.port, gantry.aeTitle, 'STRANGER');
    assert.notEqual(result.code, 0);
    assert.match(result.stdout + result.stderr, /Calling AE Title Not Recognized/i);
    assert.equal((await echoscu(gantry.port, gantry.aeTitle, 'LIMITED')).code, 0, 'LIMITED@127.0.0.1 is allowed from loopback');
    const elsewhere = await echoscu(gantry.port, gantry.aeTitle, 'ELSEWHERE');
    assert.match(elsewhere.stdout + elsewhere.stderr, /Calling AE Title Not Recognized/i, 'ELSEWHERE is allowed only from 192.0.2.1');
  });

  test('over the per-caller and total limits: rejected transient, local limit exceeded', async (t) => {
    if (!(await needPeers(t, 'echoscu'))) return;
    const held: RawAssociation[] = [];
    try {
      for (let i = 0; i < 4; i += 1) {
        const raw = await RawAssociation.open(gantry.port);
        held.push(raw);
        assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION })).kind, 'accept');
      }
      const fifth = await RawAssociation.open(gantry.port);
      held.push(fifth);
      assert.deepEqual(await fifth.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION }), {
        kind: 'reject',
        reject: { result: 2, source: 3, reason: 2 },
      });
      // Another caller still fits under the total of 6 ...
      const other = await RawAssociation.open(gantry.port);
      held.push(other);
      assert.equal((await other.associate({ called: gantry.aeTitle, calling: 'STORESCU', contexts: VERIFICATION })).kind, 'accept');
      const sixth = await RawAssociation.open(gantry.port);
      held.push(sixth);
      assert.equal((await sixth.associate({ called: gantry.aeTitle, calling: 'STORESCU', contexts: VERIFICATION })).kind, 'accept');
      // ... until the total is reached.
      const result = await echoscu(gantry.port, gantry.aeTitle);
      assert.notEqual(result.code, 0);
      assert.match(result.stdout + result.stderr, /Rejected Transient.*\n?.*Local Limit Exceeded/i);
    } finally {
      for (const raw of held) raw.destroy();
    }
    // Places are given back when associations end.
    const deadline = Date.now() + 5000;
    let code: number | null = 1;
    while (Date.now() < deadline && code !== 0) code = (await echoscu(gantry.port, gantry.aeTitle)).code;
    assert.equal(code, 0);
  });

  test('a malformed PDU gets an A-ABORT, and the server keeps serving', async (t) => {
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION })).kind, 'accept');
    raw.write(Buffer.from([0x0a, 0x00, 0x00, 0x00, 0x00, 0x02, 0xde, 0xad])); // PDU type 0x0A does not exist
    assert.deepEqual(await raw.next(), { kind: 'abort', abort: { source: 2, reason: 1 } });
    assert.deepEqual(await raw.next(), { kind: 'closed' });

    const again = await RawAssociation.open(gantry.port);
    assert.equal((await again.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION })).kind, 'accept');
    // A PDV on a presentation context that was never accepted: invalid PDU parameter value.
    again.write(Buffer.from([0x04, 0, 0, 0, 0, 8, 0, 0, 0, 4, 99, 3, 0, 0]));
    assert.deepEqual(await again.next(), { kind: 'abort', abort: { source: 2, reason: 6 } });
    again.destroy();
    if (await needPeers(t, 'echoscu')) assert.equal((await echoscu(gantry.port, gantry.aeTitle)).code, 0);
  });

  test('an idle association is aborted after dicom.idleTimeoutSeconds', async () => {
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION })).kind, 'accept');
    assert.equal(await raw.echo(1), 0x0000);
    const began = Date.now();
    assert.deepEqual(await raw.next(5000), { kind: 'abort', abort: { source: 2, reason: 0 } });
    const waited = Date.now() - began;
    assert.ok(waited >= 900 && waited < 4000, `aborted after ${waited} ms; the timeout is 1 s`);
    raw.destroy();
  });

  test('a connection that sends no A-ASSOCIATE-RQ is closed when ARTIM expires', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const began = Date.now();
    assert.deepEqual(await raw.next(5000), { kind: 'closed' });
    const waited = Date.now() - began;
    assert.ok(waited >= 900 && waited < 4000, `closed after ${waited} ms; ARTIM is 1 s`);
  });

  test('a peer maximum PDU length too small to carry a PDV is refused', async () => {
    const raw = await RawAssociation.open(gantry.port);
    assert.deepEqual(await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION, maxPduLength: 6 }), {
      kind: 'reject',
      reject: { result: 1, source: 1, reason: 1 },
    });
    raw.destroy();
  });

  test('a peer abort in the middle of a dataset leaves nothing behind', async () => {
    const raw = await RawAssociation.open(gantry.port);
    const contexts = [{ id: 1, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: ['1.2.840.10008.1.2.1'] }];
    assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts })).kind, 'accept');
    const before = countRows(gantry.storagePath).instances;
    raw.sendCommand(1, { commandField: 0x0001, messageId: 1, priority: 0, affectedSopClassUid: contexts[0]?.abstractSyntax, affectedSopInstanceUid: newUid(), commandDataSetType: 0 });
    // The first fragment of a dataset, never the last.
    raw.write(Buffer.concat([Buffer.from([0x04, 0, 0, 0, 0x10, 0x06, 0, 0, 0x10, 0x02, 1, 0]), Buffer.alloc(0x1000)]));
    await sleep(200);
    raw.write(Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
    assert.deepEqual(await raw.next(), { kind: 'closed' });
    const deadline = Date.now() + 3000;
    while (leftoverIncoming(gantry.storagePath).length > 0 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(leftoverIncoming(gantry.storagePath), []);
    assert.equal(countRows(gantry.storagePath).instances, before);
    // Found in the docs review: the line said who aborted, not what the association had done
    // (docs/operations.md section 6: each association's last line has its operations, bytes, duration).
    const aborted = gantry
      .output()
      .split('\n')
      .filter((line) => line.includes('peer aborted the association'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(aborted.length, 1);
    assert.ok((aborted[0]?.bytes as number) > 0x1000 && aborted[0]?.operations === 0 && typeof aborted[0]?.ms === 'number', JSON.stringify(aborted[0]));
  });

  test('an association released by the peer ends cleanly', async () => {
    const raw = await RawAssociation.open(gantry.port);
    assert.equal((await raw.associate({ called: gantry.aeTitle, calling: 'RAW', contexts: VERIFICATION })).kind, 'accept');
    assert.equal(await raw.echo(1, 7), 0x0000);
    assert.deepEqual(await raw.release(), { kind: 'releaseRp' });
  });

  test('four storescu processes at once are all served', async (t) => {
    if (!(await needPeers(t, 'storescu'))) return;
    const corpusDir = join(dir, 'parallel');
    await mkdir(corpusDir);
    const before = countRows(gantry.storagePath).instances;
    const batches: string[][] = [];
    for (let b = 0; b < 4; b += 1) {
      const study = newUid();
      const series = newUid();
      const files: string[] = [];
      for (let i = 0; i < 15; i += 1) {
        const path = join(corpusDir, `b${b}-${i}.dcm`);
        await writeSyntheticFile(path, { studyInstanceUid: study, seriesInstanceUid: series, patientId: `PAR${b}`, patientName: `Parallel^${b}`, instanceNumber: i + 1, rows: 128, columns: 128 });
        files.push(path);
      }
      batches.push(files);
    }
    const outcomes = await Promise.all(batches.map((files) => storescu(gantry.port, gantry.aeTitle, files)));
    for (const outcome of outcomes) {
      assert.equal(outcome.code, 0, outcome.output.slice(-2000));
      assert.equal(outcome.acknowledged.length, 15);
    }
    assert.equal(countRows(gantry.storagePath).instances - before, 60);
  });
});
