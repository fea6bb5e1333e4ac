/** gantry forward STUDY_UID (src/cli/queue.ts): what it queues, and why it queued nothing. */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfigText, type LoadedConfig } from '../../src/config/load.js';
import { openDatabase } from '../../src/db/database.js';
import { InstanceIndex } from '../../src/index/instance-index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { forwardStudy, forwardStudyReport } from '../../src/cli/queue.js';
import { Outbox } from '../../src/queue/outbox.js';
import { instanceRecord } from '../helpers/index-records.js';
import { scratchDir } from '../helpers/scratch.js';

function configFor(storagePath: string, when = ''): LoadedConfig {
  const text = `storage:\n  path: ${storagePath}\ndeid:\n  secret: a secret of the forward tests\nforward:\n  destinations:\n    - { name: research, aeTitle: RESEARCH, host: 127.0.0.1, port: 4242${when} }\n`;
  return { config: parseConfigText(text, 'test.yaml', {}), source: 'test.yaml', embedded: false };
}

/** A storage whose index holds study 1.2.1 with instances `held` (imported without --forward) or not, all de-identified. */
function storageWith(name: string, held: boolean[]): string {
  const storagePath = scratchDir(name);
  mkdirSync(storagePath, { recursive: true });
  const db = openDatabase(join(storagePath, 'index.sqlite'));
  const index = new InstanceIndex(db);
  held.forEach((forwardHeld, n) => index.upsert(instanceRecord(n + 1, { forwardHeld, attributes: { PatientID: 'P1', Modality: 'CT' } })));
  db.prepare(`UPDATE instances SET state = 'deidentified', deid_file_path = 'deidentified/' || id || '.dcm', deid_sop_instance_uid = '2.25.' || id`).run();
  db.close();
  return storagePath;
}

// Found in a review: a study imported without --forward, or one no destination's rules take, got
// "queued 0 item(s); the running Gantry sends them", exit 0, and nothing said why.
test('gantry forward says why it queued nothing: instances imported without --forward, or no destination takes the study', async () => {
  const heldOnly = storageWith('forward-study-held', [true, true]);
  const held = await forwardStudy(configFor(heldOnly), '1.2.1', silentLogger());
  assert.equal(held.queued, 0);
  assert.match(forwardStudyReport(held), /^queued nothing: its 2 instance\(s\) with a de-identified copy were imported without --forward/);

  const mixed = storageWith('forward-study-mixed', [true, false]);
  const some = await forwardStudy(configFor(mixed), '1.2.1', silentLogger());
  assert.equal(some.queued, 1);
  assert.match(forwardStudyReport(some), /^queued 1 item\(s\); 1 instance\(s\) imported without --forward stay/);

  const other = storageWith('forward-study-rules', [false]);
  const none = await forwardStudy(configFor(other, ', when: { attributes: { Modality: MR } }'), '1.2.1', silentLogger());
  assert.equal(none.queued, 0);
  assert.match(forwardStudyReport(none), /^queued nothing: no destination of forward\.destinations takes this study/);
});

// Found in the forward review: gantry forward made the study routable in one transaction and routed it
// in others. The running node, routing stable studies meanwhile, could take the instances in between:
// the study went all the same, but the operator read "queued nothing: no destination of
// forward.destinations takes this study".
test('gantry forward queues the study itself, even when the running node routes stable studies at that moment', async (t) => {
  const storagePath = storageWith('forward-study-race', [false, false]);
  const node = openDatabase(join(storagePath, 'index.sqlite'));
  node.pragma('busy_timeout = 100');
  const nodeOutbox = new Outbox(node);
  const routable = Outbox.prototype.routable;
  let raced = false;
  // The node's routing pass runs as the command first reads what is routable.
  Outbox.prototype.routable = function (this: Outbox, ...args: Parameters<Outbox['routable']>) {
    if (this !== nodeOutbox && !raced) {
      raced = true;
      try {
        nodeOutbox.route(routable.call(nodeOutbox, Date.now(), 500).map((instance) => ({ instance, destinations: ['research'] })));
      } catch (error) {
        // The command holds the index: the node routes later, and finds nothing left to route.
        if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      }
    }
    return routable.apply(this, args);
  };
  t.after(() => {
    Outbox.prototype.routable = routable;
    node.close();
  });
  const outcome = await forwardStudy(configFor(storagePath), '1.2.1', silentLogger());
  assert.ok(raced);
  assert.equal(outcome.queued, 2, forwardStudyReport(outcome));
});
