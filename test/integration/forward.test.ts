/**
 * Forwarding end to end: studies sent to Gantry arrive de-identified at real destinations (Orthanc,
 * DCMTK storescp, dcmjs-dimse's Server, another Gantry), survive an outage and a SIGKILL without loss
 * and with at most the in-flight window sent twice, and refused objects reach the dead letter, where
 * `gantry queue` sees and re-queues them.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { parse, stringify } from 'yaml';
import { dcmdumpValues, storescu, writeStorescuProfile } from '../helpers/dcmtk.js';
import { outboxRows, startCountingServer, startStorescp, waitUntil } from '../helpers/destinations.js';
import { startGantryProcess } from '../helpers/gantry.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { freePort, GANTRY_CLI, run, sleep } from '../helpers/processes.js';
import { relabelled } from '../helpers/pixel-images.js';
import { scratchDir } from '../helpers/scratch.js';
import { datasetBytes, indexedRows, metaValue } from '../helpers/stored.js';
import { writeCorpus } from '../helpers/synthetic-dicom.js';

const FAST_RETRY = { baseSeconds: 0.2, multiplier: 2, maxSeconds: 1, maxAttempts: 3 };

function gantryCli(args: string[]) {
  return run(process.execPath, [GANTRY_CLI, ...args], { timeoutMs: 30_000 });
}

test('stable studies arrive in Orthanc de-identified, with consistent pseudonyms and UIDs', async (t) => {
  if (!(await needPeers(t, 'storescu', 'Orthanc'))) return;
  const dir = scratchDir('forward-orthanc');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 2, studiesPerPatient: 2, seriesPerStudy: 2, instancesPerSeries: 5 });
  const orthanc = await startOrthanc(join(dir, 'orthanc'));
  t.after(() => orthanc.stop());
  const scp = await startStorescp(join(dir, 'archive'));
  t.after(() => scp.stop());
  const stableSeconds = 2;
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    forward: {
      stableSeconds,
      destinations: [
        { name: 'research', aeTitle: orthanc.aeTitle, host: '127.0.0.1', port: orthanc.dicomPort },
        { name: 'archive', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port, when: { attributes: { Modality: '/^(CT|MR)$/' } } },
        { name: 'mr-only', aeTitle: 'NOBODY', host: '127.0.0.1', port: 9, when: { attributes: { Modality: 'MR' } } },
      ],
    },
  });
  t.after(() => gantry.stop());

  const sent = await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  assert.equal(sent.acknowledged.length, corpus.length, sent.output.slice(-2000));
  const lastReceived = Date.now();
  await waitUntil('every instance in Orthanc', 60_000, async () => (await orthanc.get<{ CountInstances: number }>('/statistics')).CountInstances >= corpus.length);
  const delay = (Date.now() - lastReceived) / 1000;
  assert.ok(delay < stableSeconds + 10, `forwarded ${delay.toFixed(1)} s after the last store (stableSeconds ${stableSeconds})`);
  const statistics = await orthanc.get<{ CountInstances: number; CountStudies: number; CountPatients: number }>('/statistics');
  assert.equal(statistics.CountInstances, corpus.length);
  assert.equal(statistics.CountStudies, 4);
  assert.equal(statistics.CountPatients, 2, "each patient's studies carry one pseudonym");

  const studies = await orthanc.get<Array<{ MainDicomTags: Record<string, string>; PatientMainDicomTags: Record<string, string> }>>('/studies?expand');
  const originalStudies = new Set(corpus.map((instance) => instance.studyInstanceUid));
  const originalPatients = new Set(corpus.map((instance) => instance.patientId));
  await waitUntil('the archive has them too', 30_000, () => outboxRows(gantry.storagePath).filter((row) => row.destination === 'archive' && row.state === 'sent').length === corpus.length);
  assert.equal(scp.requests(), corpus.length, 'the archive got each instance once');
  await waitUntil('forwarded once both destinations have them', 5_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'forwarded'));
  const db = new Database(join(gantry.storagePath, 'index.sqlite'), { readonly: true });
  const deidStudies = new Set((db.prepare('SELECT DISTINCT deid_study_instance_uid AS uid FROM instances').all() as Array<{ uid: string }>).map((row) => row.uid));
  db.close();
  for (const study of studies) {
    const uid = study.MainDicomTags['StudyInstanceUID'] as string;
    assert.ok(!originalStudies.has(uid), 'no original Study Instance UID');
    assert.ok(deidStudies.has(uid), 'the UID Gantry recorded for its copy');
    assert.ok(!originalPatients.has(study.PatientMainDicomTags['PatientID'] as string), 'no original Patient ID');
    assert.ok(!/Doe/.test(study.PatientMainDicomTags['PatientName'] ?? ''), 'no original Patient Name');
    assert.ok(!/^A\d/.test(study.MainDicomTags['AccessionNumber'] ?? ''), 'no original Accession Number');
  }
  const outbox = outboxRows(gantry.storagePath);
  assert.equal(outbox.length, 2 * corpus.length, 'CT goes to research and archive, not to mr-only');
  assert.ok(outbox.every((row) => row.state === 'sent' && row.lastStatus === '0x0000' && row.attempts === 1), 'each sent once, at the first attempt');
});

test('an outage and a SIGKILL lose nothing, and only the window in flight is sent twice', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp'))) return;
  const dir = scratchDir('forward-outage');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 2, studiesPerPatient: 1, seriesPerStudy: 2, instancesPerSeries: 150, rows: 128, columns: 128 });
  const destinationPort = await freePort();
  const config = {
    forward: {
      stableSeconds: 1,
      retry: FAST_RETRY,
      destinations: [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: destinationPort }],
    },
  };
  const gantryDir = join(dir, 'gantry');
  let gantry = await startGantryProcess(gantryDir, config);
  t.after(() => gantry.stop('SIGKILL'));
  const sent = await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  assert.equal(sent.acknowledged.length, corpus.length);

  // The destination is down when the studies become stable: everything waits in the outbox.
  await waitUntil('routing', 30_000, () => outboxRows(gantry.storagePath).length === corpus.length);
  await waitUntil('a failed connection noted', 10_000, () => outboxRows(gantry.storagePath).some((row) => /unreachable/.test(row.lastError ?? '')));
  await sleep(1500);
  assert.ok(outboxRows(gantry.storagePath).every((row) => row.state === 'queued' && row.attempts === 0), 'an unreachable destination costs no attempts');

  // It comes up; Gantry is killed in the middle of forwarding and started again.
  const scp = await startStorescp(join(dir, 'received'), [], destinationPort);
  t.after(() => scp.stop());
  await waitUntil('forwarding under way', 60_000, () => outboxRows(gantry.storagePath).filter((row) => row.state === 'sent').length >= 40);
  await gantry.stop('SIGKILL');
  const sentBeforeKill = outboxRows(gantry.storagePath).filter((row) => row.state === 'sent').length;
  assert.ok(sentBeforeKill < corpus.length, 'killed before the end');
  gantry = await startGantryProcess(gantryDir, config, gantry.port);
  await waitUntil('the outbox empties', 60_000, () => outboxRows(gantry.storagePath).every((row) => row.state === 'sent'));
  await sleep(300);

  const received = readdirSync(join(dir, 'received')).length;
  assert.equal(received, corpus.length, 'every instance arrived');
  const requests = scp.requests();
  // storescp grants no asynchronous window: one request was in flight at the kill.
  assert.ok(requests - corpus.length <= 1, `${requests} requests for ${corpus.length} instances`);
  assert.ok(indexedRows(gantry.storagePath).every((row) => row.state === 'forwarded'));
});

test('forwarding to another Gantry uses the asynchronous window it grants', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('forward-window');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 60 });
  const research = await startGantryProcess(join(dir, 'research'), { dicom: { aeTitle: 'RESEARCH', maxAsyncOperations: 8 } });
  t.after(() => research.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    forward: { stableSeconds: 1, destinations: [{ name: 'research', aeTitle: 'RESEARCH', host: '127.0.0.1', port: research.port, maxOperations: 16 }] },
  });
  t.after(() => gantry.stop());
  await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  await waitUntil('all confirmed', 60_000, () => outboxRows(gantry.storagePath).filter((row) => row.state === 'sent').length === corpus.length);
  assert.match(research.output(), /"calling":"GANTRY"[^\n]*"window":8[^\n]*"association accepted"/, 'the research node granted 8');
  // Items are recorded as they are confirmed; the association's summary is logged after its release.
  await waitUntil('the association summary', 10_000, () => /"destination":"research","sent":\d+,"failed":0,"unsent":0,"window":8/.test(gantry.output()));
  assert.equal(indexedRows(research.storagePath).length, corpus.length);
});

test('dcmjs-dimse as destination: failure statuses are retried, then dead-lettered and re-queued by gantry queue', async (t) => {
  if (!(await needPeers(t, 'storescu'))) return;
  const dir = scratchDir('forward-dimse');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 6 });
  // Every instance is refused once (out of resources); one is refused always.
  let alwaysRefused: string | undefined;
  let allowAll = false;
  const server = await startCountingServer((uid, attempt) => {
    alwaysRefused ??= uid;
    if (uid === alwaysRefused && !allowAll) return 0xa700;
    return attempt === 1 ? 0xa700 : 0x0000;
  });
  t.after(() => server.close());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    forward: { stableSeconds: 1, retry: FAST_RETRY, destinations: [{ name: 'dimse', aeTitle: 'DIMSE', host: '127.0.0.1', port: server.port }] },
  });
  t.after(() => gantry.stop());
  await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  await waitUntil('five sent and one dead', 60_000, () => {
    const rows = outboxRows(gantry.storagePath);
    return rows.filter((row) => row.state === 'sent').length === 5 && rows.filter((row) => row.state === 'dead').length === 1;
  });
  const rows = outboxRows(gantry.storagePath);
  assert.ok(rows.filter((row) => row.state === 'sent').every((row) => row.attempts === 2), 'refused once, stored on the second attempt');
  const dead = rows.find((row) => row.state === 'dead');
  assert.equal(dead?.attempts, FAST_RETRY.maxAttempts);
  assert.equal(dead?.lastStatus, '0xA700');

  const listed = await gantryCli(['queue', 'ls', '--config', gantry.configPath]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /dimse: queued 0, sent 5, dead 1/);
  assert.match(listed.stdout, /dimse\t3\t0xA700\tdimse answered 0xA700/);

  allowAll = true;
  const retried = await gantryCli(['queue', 'retry', '--config', gantry.configPath]);
  assert.match(retried.stdout, /re-queued 1 item/);
  await waitUntil('the dead item sent', 30_000, () => outboxRows(gantry.storagePath).every((row) => row.state === 'sent'));
  assert.equal(new Set(server.received).size, corpus.length);
});

test('a compressed syntax the destination refuses is sent decompressed; one Gantry cannot decode is dead-lettered with the reason; explicit VR is converted', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp', 'dcmdump', 'dcmdjpls', 'dcmdjpeg', PYDICOM_TEST_FILES))) return;
  const dir = scratchDir('forward-syntax');
  // storescp +xi accepts implicit VR little endian only.
  const scp = await startStorescp(join(dir, 'received'), ['+xi']);
  t.after(() => scp.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    // The JPEG secondary captures would be held for burned-in text: this test lets them through.
    deid: {
      rules: [
        { action: 'pass', when: { attributes: { Modality: 'NM' } } },
        { action: 'pass', when: { attributes: { Modality: 'OT' } } },
      ],
    },
    forward: { stableSeconds: 1, destinations: [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port }] },
  });
  t.after(() => gantry.stop());
  const files = ['MR_small_jpeg_ls_lossless.dcm', 'CT_small.dcm', 'JPEG-lossy.dcm'].map((name) => join(PYDICOM_TEST_FILES, name));
  // Gantry has no video decoder: a JPEG file relabelled MPEG-4 stands for a video it cannot decompress.
  const video = join(dir, 'video.dcm');
  relabelled(join(PYDICOM_TEST_FILES, 'SC_rgb_jpeg_dcmtk.dcm'), video, '1.2.840.10008.1.2.4.102');

  // Each file goes in its own transfer syntax (storescu would otherwise convert to uncompressed).
  const profile = join(dir, 'storescu.cfg');
  await writeStorescuProfile(files, profile);
  const sent = await storescu(gantry.port, gantry.aeTitle, files, ['-xf', profile, 'Corpus']);
  assert.equal(sent.acknowledged.length, 3, sent.output.slice(-1500));
  // On an association of its own: storescu proposes one syntax per SOP class.
  const videoProfile = join(dir, 'storescu-video.cfg');
  await writeStorescuProfile([video], videoProfile);
  const sentVideo = await storescu(gantry.port, gantry.aeTitle, [video], ['-xf', videoProfile, 'Corpus']);
  assert.equal(sentVideo.acknowledged.length, 1, sentVideo.output.slice(-1500));
  await waitUntil('three sent, one dead', 30_000, () => {
    const rows = outboxRows(gantry.storagePath);
    return rows.filter((row) => row.state === 'sent').length === 3 && rows.some((row) => row.state === 'dead');
  });
  const dead = outboxRows(gantry.storagePath).find((row) => row.state === 'dead');
  assert.match(dead?.lastError ?? '', /transfer syntax MPEG-4 .* not accepted by research/);
  assert.equal(dead?.attempts, 0, `not an attempt: nothing was sent (${JSON.stringify(dead)})`);
  const received = readdirSync(join(dir, 'received')).map((name) => join(dir, 'received', name));
  assert.equal(received.length, 3);
  const db = new Database(join(gantry.storagePath, 'index.sqlite'), { readonly: true });
  const copies = (db.prepare(`SELECT o.file_path AS path FROM forward_outbox o WHERE o.state = 'sent'`).all() as Array<{ path: string }>).map((row) => join(gantry.storagePath, row.path));
  db.close();
  const tags = ['0010,0010', '0010,0020', '0008,0018', '0020,000d', '0028,0004'];
  for (const arrived of received) {
    assert.equal(metaValue(arrived, 0x0010), '1.2.840.10008.1.2', 'arrived in implicit VR little endian');
    const arrivedValues = await dcmdumpValues(arrived, tags);
    const copy = copies.find((path) => metaValue(path, 0x0003) === metaValue(arrived, 0x0003));
    assert.ok(copy, 'the copy that was sent');
    const sentValues = await dcmdumpValues(copy, tags);
    for (const tag of tags) assert.equal(arrivedValues[tag], sentValues[tag], `${tag} the same after conversion`);
    if (metaValue(copy, 0x0010) === '1.2.840.10008.1.2.1') {
      const pixels = 128 * 128 * 2; // CT_small
      // Pixel Data ends both datasets: its bytes are the same.
      assert.ok(datasetBytes(arrived).subarray(-pixels).equals(datasetBytes(copy).subarray(-pixels)), 'pixel data unchanged');
    } else if (metaValue(copy, 0x0010) === '1.2.840.10008.1.2.4.51') {
      // Lossy JPEG decodes within rounding of the inverse DCT: every 12-bit sample within 1 of DCMTK's.
      const pixels = 1024 * 256 * 2; // JPEG-lossy
      const decoded = join(dir, 'decoded-jpeg.dcm');
      assert.equal((await run('dcmdjpeg', [copy, decoded], { timeoutMs: 30_000 })).code, 0);
      const [mine, reference] = [datasetBytes(arrived).subarray(-pixels), datasetBytes(decoded).subarray(-pixels)];
      for (let at = 0; at < pixels; at += 2) assert.ok(Math.abs(mine.readUInt16LE(at) - reference.readUInt16LE(at)) <= 1, `JPEG sample ${at / 2} as DCMTK decodes it`);
    } else {
      assert.equal(metaValue(copy, 0x0010), '1.2.840.10008.1.2.4.80', 'stored in JPEG-LS');
      const pixels = 64 * 64 * 2; // MR_small
      const decoded = join(dir, 'decoded.dcm');
      assert.equal((await run('dcmdjpls', [copy, decoded], { timeoutMs: 30_000 })).code, 0);
      assert.ok(datasetBytes(arrived).subarray(-pixels).equals(datasetBytes(decoded).subarray(-pixels)), 'decompressed as DCMTK decodes it');
    }
  }
});

test('gantry forward sends a study before it is stable; retention deletes forwarded files after a restart', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp'))) return;
  const dir = scratchDir('forward-now');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: 3 });
  const scp = await startStorescp(join(dir, 'received'));
  t.after(() => scp.stop());
  const destinations = [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port }];
  const gantryDir = join(dir, 'gantry');
  let gantry = await startGantryProcess(gantryDir, { forward: { stableSeconds: 3600, destinations } });
  t.after(() => gantry.stop());
  await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'deidentified'));
  const study = corpus[0]?.studyInstanceUid as string;
  const forwarded = await gantryCli(['forward', study, '--config', gantry.configPath]);
  assert.equal(forwarded.code, 0, forwarded.stderr);
  assert.match(forwarded.stdout, /queued 3 item\(s\); the running Gantry sends them/);
  // Its output is what it prints; its log goes to stderr (found in a review: a JSON line among them).
  assert.equal(forwarded.stdout, 'queued 3 item(s); the running Gantry sends them\n');
  await waitUntil('the study sent', 30_000, () => outboxRows(gantry.storagePath).filter((row) => row.state === 'sent').length === 3);
  await sleep(1500);
  assert.equal(outboxRows(gantry.storagePath).length, 3, 'the other study, not stable, waits');
  const unknown = await gantryCli(['forward', '1.2.3.4.5', '--config', gantry.configPath]);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /no study with Study Instance UID 1\.2\.3\.4\.5/);

  // Retention: with 1 s, the forwarded study's files go at the next sweep (one runs at start).
  await gantry.stop();
  gantry = await startGantryProcess(gantryDir, { forward: { stableSeconds: 3600, destinations }, storage: { retainOriginals: '1s', retainDeidentified: '1s' } });
  const rows = indexedRows(gantry.storagePath);
  // Files are deleted inside the transaction that marks them: wait for the marks, then look at the files.
  const marked = () => {
    const db = new Database(join(gantry.storagePath, 'index.sqlite'), { readonly: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM instances WHERE original_deleted_at IS NOT NULL AND deid_deleted_at IS NOT NULL`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  };
  await waitUntil('the forwarded study marked deleted', 10_000, () => marked() === 3);
  assert.ok(rows.filter((row) => row.state === 'forwarded').every((row) => !existsSync(join(gantry.storagePath, row.filePath))), 'its originals are gone');
  const kept = rows.filter((row) => row.state !== 'forwarded');
  assert.equal(kept.length, 3);
  assert.ok(kept.every((row) => existsSync(join(gantry.storagePath, row.filePath))), 'files of the study not forwarded stay');
});

test('a destination added by SIGHUP receives the stable studies that had nowhere to go', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp'))) return;
  const dir = scratchDir('forward-reload');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 4 });
  const scp = await startStorescp(join(dir, 'received'));
  t.after(() => scp.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), { forward: { stableSeconds: 1 } });
  t.after(() => gantry.stop());
  await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  await waitUntil('de-identified', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'deidentified'));
  await sleep(1500);
  assert.equal(outboxRows(gantry.storagePath).length, 0, 'no destination: nothing queued');
  const config = parse(readFileSync(gantry.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  config['forward'] = { stableSeconds: 1, destinations: [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port }] };
  writeFileSync(gantry.configPath, stringify(config));
  process.kill(gantry.pid, 'SIGHUP');
  await waitUntil('the study sent after the reload', 30_000, () => outboxRows(gantry.storagePath).filter((row) => row.state === 'sent').length === corpus.length);
  assert.equal(readdirSync(join(dir, 'received')).length, corpus.length);
});

test('an instance re-sent after it was forwarded is forwarded again, once', async (t) => {
  if (!(await needPeers(t, 'storescu', 'storescp'))) return;
  const dir = scratchDir('forward-resend');
  const corpusDir = join(dir, 'corpus');
  await mkdir(corpusDir, { recursive: true });
  const corpus = await writeCorpus(corpusDir, { patients: 1, studiesPerPatient: 1, seriesPerStudy: 1, instancesPerSeries: 3 });
  const scp = await startStorescp(join(dir, 'received'));
  t.after(() => scp.stop());
  const gantry = await startGantryProcess(join(dir, 'gantry'), {
    forward: { stableSeconds: 1, destinations: [{ name: 'research', aeTitle: 'STORESCP', host: '127.0.0.1', port: scp.port }] },
  });
  t.after(() => gantry.stop());
  await storescu(gantry.port, gantry.aeTitle, corpus.map((instance) => instance.path));
  await waitUntil('forwarded', 30_000, () => indexedRows(gantry.storagePath).every((row) => row.state === 'forwarded'));
  assert.equal(scp.requests(), 3);
  await storescu(gantry.port, gantry.aeTitle, [corpus[0]?.path as string]);
  await waitUntil('forwarded again', 30_000, () => scp.requests() === 4 && indexedRows(gantry.storagePath).every((row) => row.state === 'forwarded'));
  await sleep(1500);
  assert.equal(scp.requests(), 4, 'the re-sent instance went once more, the others not');
  assert.equal(outboxRows(gantry.storagePath).length, 3, 'one row per instance and destination');
});
