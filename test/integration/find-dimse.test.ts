/**
 * C-FIND at the DIMSE level (PS3.7 9.1.2, PS3.4 C.4.1) against DCMTK findscu: the identifier reaches
 * the handler, each match goes out as a pending response with its identifier, the final response
 * follows, and a failing handler answers with its status. The query service itself is tested elsewhere.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeTextDataset } from '../../src/dicom/dataset-encoder.js';
import { BufferSource, parseDataset } from '../../src/dicom/dataset-tree.js';
import type { DicomServer } from '../../src/dimse/server.js';
import type { DimseObserver } from '../../src/dimse/observer.js';
import type { FindRequest } from '../../src/dimse/services.js';
import { DimseStatusError, Status } from '../../src/dimse/status.js';
import { dcmdumpValues } from '../helpers/dcmtk.js';
import { needPeers } from '../helpers/peers.js';
import { DCMTK_ENV, run } from '../helpers/processes.js';
import { scratchDir } from '../helpers/scratch.js';
import { startTestServer } from '../helpers/test-server.js';

const STUDY_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.2.1';

async function startFindServer(find: (request: FindRequest) => AsyncIterable<Buffer>, observer?: DimseObserver): Promise<{ server: DicomServer; port: number }> {
  return startTestServer({
    ...(observer ? { observer } : {}),
    serviceFor: (abstractSyntax, callingAeTitle) => (abstractSyntax === STUDY_ROOT_FIND && callingAeTitle === 'RESEARCHER' ? 'find' : undefined),
    handlers: {
      echo: () => ({ status: Status.Success }),
      store: () => {
        throw new Error('not in this test');
      },
      find: (request) => find(request),
    },
  });
}

function findscu(port: number, dir: string, keys: string[], calling = 'RESEARCHER') {
  return run('findscu', ['-v', '-S', '-aet', calling, '-aec', 'GANTRY', '-X', '-od', dir, ...keys.flatMap((key) => ['-k', key]), '127.0.0.1', String(port)], {
    env: DCMTK_ENV,
    timeoutMs: 30_000,
  });
}

test('C-FIND streams one pending response per match with its identifier, then success', async (t) => {
  if (!(await needPeers(t, 'findscu', 'dcmdump'))) return;
  let received: FindRequest | undefined;
  const { server, port } = await startFindServer(async function* (request) {
    received = request;
    const encoding = request.transferSyntaxUid === '1.2.840.10008.1.2' ? 'implicit-le' : 'explicit-le';
    for (const [name, uid] of [['Doe^John', '1.2.3.1'], ['Doe^Jane', '1.2.3.2'], ['Doe^Jim', '1.2.3.3']] as const) {
      yield encodeTextDataset(
        [
          { tag: 0x00080052, value: 'STUDY' },
          { tag: 0x00100010, value: name },
          { tag: 0x0020000d, value: uid },
        ],
        encoding,
      );
    }
  });
  t.after(() => server.close(1000));
  const dir = scratchDir('find-dimse');
  const result = await findscu(port, dir, ['QueryRetrieveLevel=STUDY', 'PatientName=Doe*', 'StudyInstanceUID']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(`${result.stdout}${result.stderr}`, /Received Final Find Response \(Success\)/);
  const files = readdirSync(dir).filter((file) => file.startsWith('rsp')).sort();
  assert.equal(files.length, 3);
  const names = await Promise.all(files.map(async (file) => (await dcmdumpValues(join(dir, file), ['0010,0010']))['0010,0010']));
  assert.deepEqual(names, ['Doe^John', 'Doe^Jane', 'Doe^Jim']);
  assert.ok(received, 'the handler got the request');
  const keys = parseDataset(new BufferSource(received.identifier), received.transferSyntaxUid === '1.2.840.10008.1.2' ? 'implicit-le' : 'explicit-le');
  assert.equal(keys.find((element) => element.tag === 0x00100010)?.value?.toString('latin1').trim(), 'Doe*');
  assert.equal(received.sopClassUid, STUDY_ROOT_FIND);
});

test('a failing C-FIND handler answers with its status; an unlisted caller gets no FIND context', async (t) => {
  if (!(await needPeers(t, 'findscu'))) return;
  const { server, port } = await startFindServer(async function* () {
    yield* [];
    throw new DimseStatusError(0xa900, 'QueryRetrieveLevel is missing');
  });
  t.after(() => server.close(1000));
  const dir = scratchDir('find-dimse-fail');
  const failed = await findscu(port, dir, ['PatientName=X']);
  assert.match(`${failed.stdout}${failed.stderr}`, /Received Final Find Response \(Error: DataSetDoesNotMatchSOPClass\)/);
  const refused = await findscu(port, dir, ['QueryRetrieveLevel=STUDY'], 'SOMEONE');
  assert.match(`${refused.stdout}${refused.stderr}`, /No Acceptable Presentation Contexts|Association Rejected/i);
});

test('C-CANCEL ends a running C-FIND with status Cancel and stops the handler', async (t) => {
  if (!(await needPeers(t, 'findscu'))) return;
  let yielded = 0;
  let stopped = false;
  const { server, port } = await startFindServer(async function* (_request) {
    try {
      for (let i = 0; i < 200; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        yielded += 1;
        yield encodeTextDataset([{ tag: 0x00080052, value: 'STUDY' }, { tag: 0x0020000d, value: `1.2.3.${i}` }], 'explicit-le');
      }
    } finally {
      stopped = true;
    }
  });
  t.after(() => server.close(1000));
  const result = await run('findscu', ['-v', '-S', '-aet', 'RESEARCHER', '-aec', 'GANTRY', '--cancel', '2', '-k', 'QueryRetrieveLevel=STUDY', '127.0.0.1', String(port)], {
    env: DCMTK_ENV,
    timeoutMs: 30_000,
  });
  assert.match(`${result.stdout}${result.stderr}`, /Received Final Find Response \(Cancel/);
  assert.ok(stopped, 'the handler was stopped');
  assert.ok(yielded < 50, `${yielded} matches produced before the cancel took effect`);
});

test('an observer (metrics) that throws changes nothing for the peer', async (t) => {
  if (!(await needPeers(t, 'findscu', 'dcmdump'))) return;
  const calls: string[] = [];
  const fail = (name: string) => () => {
    calls.push(name);
    throw new Error('a metric that fails');
  };
  const observer: DimseObserver = {
    associationAccepted: fail('accepted'),
    associationRejected: fail('rejected'),
    bytesReceived: fail('bytes'),
    operationDone: fail('operation'),
  };
  const { server, port } = await startFindServer(async function* () {
    yield encodeTextDataset([{ tag: 0x00080052, value: 'STUDY' }, { tag: 0x0020000d, value: '1.2.3' }], 'explicit-le');
  }, observer);
  t.after(() => server.close(1000));
  const dir = scratchDir('find-dimse-observer');
  const result = await findscu(port, dir, ['0008,0052=STUDY', '0020,000D']);
  assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
  assert.equal(readdirSync(dir).filter((file) => file.startsWith('rsp')).length, 1);
  for (const name of ['accepted', 'bytes', 'operation']) assert.ok(calls.includes(name), `the observer was told: ${name}`);
});
